import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { maxRelativeDifference } from '../../src/backends/passes/export.js';
import { ConfigError, StateDictError } from '../../src/errors.js';
import { CONFIG_METADATA_KEY, loadModel, loadWeights, openModel, saveModel } from '../../src/io/model_dir.js';
import { loadSafetensorsFile, saveSafetensorsFile } from '../../src/io/safetensors.js';
import { runModule } from '../../src/nn/run.js';
import { createModel } from '../../src/models/index.js';
import { loadFixture } from '../helpers/fixtures.js';
import { cli, fixtureConfig, fixturePath, tempDir } from './run.js';

const CEIT_MICRO = { embed_dim: 48, depth: 2, num_heads: 3, img_size: 64, num_classes: 10 };

describe('model directories', () => {
  it('round-trips a model: config.json, model.safetensors with its config, identical outputs', async () => {
    const dir = join(tempDir(), 'ceit-micro');
    const model = createModel('ceit', CEIT_MICRO, { seed: 3 }).eval();
    await saveModel(model, dir, { name: 'ceit' });
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config).toMatchObject({ architecture: 'ceit', family: 'ceit', config: CEIT_MICRO, pretrained: { input_size: [3, 64, 64], num_classes: 10, interpolation: 'bicubic', crop_pct: 0.875 } });
    expect(typeof config.volution_version).toBe('string');
    const { metadata } = await loadSafetensorsFile(join(dir, 'model.safetensors'));
    expect(JSON.parse(metadata[CONFIG_METADATA_KEY]!)).toMatchObject({ family: 'ceit', config: CEIT_MICRO });

    const loaded = await loadModel(dir);
    expect(loaded.name).toBe('ceit');
    expect(loaded.pretrained.inputSize).toEqual([3, 64, 64]);
    expect(loaded.warnings).toEqual([]);
    const x = (await loadSafetensorsFile(fixturePath('ceit_micro', 'io.safetensors'))).tensors.get('input')!;
    const [a, b] = await Promise.all([runModule(model, x), runModule(loaded.model, x)]);
    expect(maxRelativeDifference(b.output, a.output)).toBe(0);
  });

  it('runs a model directory from the command line without --model', async () => {
    const dir = join(tempDir(), 'fixture-model');
    const fixture = loadFixture('ceit_micro');
    const model = createModel('ceit', JSON.parse(fixtureConfig('ceit_micro')) as object);
    model.loadStateDict(fixture.weights);
    await saveModel(model, dir, { name: 'ceit' });
    const out = join(tempDir(), 'y.safetensors');
    const r = await cli('forward', '--weights', dir, '--input', fixturePath('ceit_micro', 'io.safetensors'), '--output', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const logits = (await loadSafetensorsFile(out)).tensors.get('logits')!;
    expect(maxRelativeDifference(logits, fixture.io.get('logits')!)).toBeLessThan(1e-4);
  });

  it('says what is wrong with a directory that is not a model', async () => {
    const dir = tempDir();
    await expect(loadModel(dir)).rejects.toThrow(ConfigError);
    await expect(loadModel(dir)).rejects.toThrow(/not a volution model directory: it has no config\.json/);
    writeFileSync(join(dir, 'config.json'), '{"architecture": "ceit"');
    await expect(loadModel(dir)).rejects.toThrow(/config\.json is not valid JSON/);
  });
});

describe('loadWeights', () => {
  it('strips a module. prefix and tolerates recomputable buffers', async () => {
    const fixture = loadFixture('ceit_micro');
    const path = join(tempDir(), 'ddp.safetensors');
    const wrapped = new Map([...fixture.weights].filter(([k]) => !k.endsWith('num_batches_tracked')).map(([k, v]) => [`module.${k}`, v]));
    await saveSafetensorsFile(path, wrapped);
    const model = createModel('ceit', JSON.parse(fixtureConfig('ceit_micro')) as object);
    const { report, format, warnings } = await loadWeights(model, path, { family: 'ceit' });
    expect(format).toBe('safetensors');
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expect(warnings).toEqual([]);
  });

  it('fails strictly, and reports what it skipped when not strict', async () => {
    const model = createModel('ceit', { ...CEIT_MICRO, depth: 3 });
    const small = join(tempDir(), 'small');
    await saveModel(createModel('ceit', CEIT_MICRO), small, { name: 'ceit' });
    await expect(loadWeights(model, small)).rejects.toThrow(StateDictError);
    await expect(loadWeights(model, small)).rejects.toThrow(/missing keys: blocks\.2\..*different config: depth 2 in the checkpoint vs 3 in the model/);
    const { report, warnings } = await loadWeights(model, small, { strict: false });
    expect(report.missing.length).toBeGreaterThan(0);
    expect(warnings.join('\n')).toMatch(/non-strict load .* missing/);
  });

  it('warns when a checkpoint was saved with another head_dim (it loads without a shape error)', async () => {
    // uniformer_micro: embed_dim [16, 32, 64, 128]; head_dim 16 → heads [1, 2, 4, 8], head_dim 8 → [2, 4, 8, 16]: same weights.
    const config = JSON.parse(fixtureConfig('uniformer_micro')) as Record<string, unknown>;
    const dir = join(tempDir(), 'uniformer');
    await saveModel(createModel('uniformer', config), dir, { name: 'uniformer' });
    const wrong = createModel('uniformer', { ...config, head_dim: 8 });
    const { warnings } = await loadWeights(wrong, dir);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/head_dim 16 in the checkpoint vs 8 in the model/);
    expect(warnings[0]).toContain(`--config '{"head_dim":16}'`);

    const loaded = await openModel({ model: 'uniformer', config: { ...config, head_dim: 8 }, weights: dir });
    expect(loaded.warnings[0]).toMatch(/silently wrong/);
    const r = await cli('forward', '--model', 'uniformer', '--config', JSON.stringify({ ...config, head_dim: 8 }), '--weights', join(dir, 'model.safetensors'), '--input', fixturePath('uniformer_micro', 'io.safetensors'), '--output', join(tempDir(), 'y.safetensors'));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^warning: .*head_dim 16 in the checkpoint vs 8 in the model/);
  });
});
