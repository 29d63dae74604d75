import { describe, expect, it } from 'vitest';
import { cli } from './run.js';

describe('volution benchmark', () => {
  it('reports latency and throughput per batch size', async () => {
    const r = await cli('benchmark', '--model', 'ceit', '--config', '{"embed_dim": 48, "depth": 2, "num_heads": 3, "img_size": 64}', '--batch', '1,2', '--reps', '3', '--warmup', '1', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { backend: string; results: { batch: number; median: number; p90: number; runs: number; throughput: number }[] };
    expect(out.backend).toMatch(/^onnxruntime-node .*2 threads$/);
    expect(out.results.map((x) => x.batch)).toEqual([1, 2]);
    for (const x of out.results) {
      expect(x.runs).toBe(3);
      expect(x.p90).toBeGreaterThanOrEqual(x.median);
      expect(x.throughput).toBeCloseTo((1000 * x.batch) / x.median, 6);
    }
  });

  it('rejects a malformed batch list', async () => {
    const r = await cli('benchmark', '--model', 'ceit', '--batch', '1,x');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/expected comma-separated whole numbers/);
  });
});

describe('volution zoo', () => {
  it('builds, measures and runs the matching variants', async () => {
    const r = await cli('zoo', 'mixformer_b0', '--reps', '1', '--warmup', '0', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { models: { model: string; params: number; macs: number; output: number[]; latency_ms: number; error?: string }[] };
    expect(out.models).toHaveLength(1);
    const [row] = out.models;
    expect(row).toMatchObject({ model: 'mixformer_b0', params: 5_098_767, output: [1, 1000] });
    expect(row!.error).toBeUndefined();
    expect(row!.latency_ms).toBeGreaterThan(0);
  });
});
