import { describe, expect, it } from 'vitest';
import { cli } from './run.js';

describe('volution list', () => {
  it('lists variants as a table and as JSON', async () => {
    const table = await cli('list', 'ceit*');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ceit_tiny\s+ceit\s+224×224\s+76\.4\s+published$/m);
    const { stdout, code } = await cli('list', 'ceit_t*', '--json');
    expect(code).toBe(0);
    const rows = JSON.parse(stdout) as { name: string; family: string; input_size: number[] }[];
    expect(rows.map((r) => r.name)).toEqual(['ceit_tiny', 'ceit_tiny_384']);
    expect(rows[1]!.input_size).toEqual([3, 384, 384]);
  });

  it('says so when nothing matches', async () => {
    const r = await cli('list', 'no_such_model*');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("no variant matches 'no_such_model*'");
  });
});

describe('volution info', () => {
  it('reports the official parameter and MAC counts of ceit_tiny', async () => {
    const { stdout, code } = await cli('info', 'ceit_tiny', '--json');
    expect(code).toBe(0);
    const info = JSON.parse(stdout) as { params: number; macs: number; input: number[]; stages: { stage: string; params: number; macs: number }[]; preprocessing: { resize: number } };
    // The official module: 6,356,904 parameters; 1,395,307,008 MACs at 224 (torch.profiler conv + mm, fixtures' variants.json).
    expect(info.params).toBe(6_356_904);
    expect(info.macs).toBe(1_395_307_008);
    expect(info.input).toEqual([1, 3, 224, 224]);
    expect(info.preprocessing.resize).toBe(256);
    expect(info.stages.reduce((n, s) => n + s.params, 0)).toBe(info.params);
    expect(info.stages.reduce((n, s) => n + s.macs, 0)).toBe(info.macs);
    expect(info.stages.map((s) => s.stage)).toContain('blocks.11');
  });

  it('prints a readable summary for a family with a config', async () => {
    const { stdout, code } = await cli('info', 'ceit', '--config', '{"embed_dim": 48, "depth": 2, "num_heads": 3, "img_size": 64, "num_classes": 10}');
    expect(code).toBe(0);
    expect(stdout).toMatch(/parameters\s+[\d,]+/);
    expect(stdout).toMatch(/MACs\s+[\d.]+ M at 1×3×64×64/);
    expect(stdout).toContain('config        {');
    expect(stdout).toMatch(/^i2t\s+/m);
  });

  it('fails with one typed line for an unknown model or option', async () => {
    const unknown = await cli('info', 'ceit_tinyy');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toMatch(/^error: unknown model 'ceit_tinyy'.*ceit_tiny/);
    const badOption = await cli('info', 'ceit', '--config', '{"depht": 3}');
    expect(badOption.code).toBe(1);
    expect(badOption.stderr).toMatch(/unknown config option 'depht'/);
    const badJson = await cli('info', 'ceit', '--config', '{depth: 3}');
    expect(badJson.code).toBe(1);
    expect(badJson.stderr).toMatch(/^error: --config: the JSON does not parse/);
  });
});

describe('volution --help', () => {
  it('documents every command', async () => {
    const top = await cli('--help');
    expect(top.code).toBe(0);
    for (const c of ['list', 'info', 'forward', 'predict', 'export', 'benchmark', 'zoo']) expect(top.stdout).toContain(c);
    const forward = await cli('forward', '--help');
    expect(forward.code).toBe(0);
    expect(forward.stdout).toContain('"<module path>:in.<i>"');
    expect(forward.stdout).toContain('--threads <n>');
  });

  it('exits 1 on a usage error', async () => {
    const r = await cli('forward', '--model', 'ceit');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/required option/);
  });
});
