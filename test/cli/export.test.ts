import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OrtSession } from '../../src/backends/ort/session.js';
import { maxRelativeDifference } from '../../src/backends/passes/export.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { loadFixture } from '../helpers/fixtures.js';
import { cli, fixtureConfig, fixturePath, tempDir } from './run.js';

const args = ['--model', 'ceit', '--config', fixtureConfig('ceit_micro'), '--weights', fixturePath('ceit_micro', 'weights.safetensors')];

async function runOnnx(path: string, x: NDArray): Promise<NDArray> {
  const session = await OrtSession.create(readFileSync(path));
  try {
    return (await session.run({ input: x })).logits!;
  } finally {
    await session.release();
  }
}

/** The rows of `x` repeated cyclically to a batch of `n`. */
function batchOf(x: NDArray, n: number): NDArray {
  const per = x.size / x.shape[0]!;
  const out = NDArray.float32([n, ...x.shape.slice(1)]);
  for (let i = 0; i < n; i++) out.data.set((x.data as Float32Array).subarray((i % x.shape[0]!) * per, (i % x.shape[0]!) * per + per), i * per);
  return out;
}

describe('volution export', () => {
  const fixture = loadFixture('ceit_micro');
  const input = fixture.io.get('input')!.astype('float32');
  const logits = fixture.io.get('logits')!;

  it('writes a folded graph that agrees with the official logits', async () => {
    const dir = tempDir();
    const out = join(dir, 'ceit.onnx');
    const r = await cli('export', ...args, '--out', out, '--batch', '2');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/10 BatchNorms and 0 residuals folded/);
    expect(r.stdout).toMatch(/max relative difference \d\.\d\de-\d+ at batch 2 \(onnxruntime-node/);
    expect(readdirSync(dir)).toEqual(['ceit.onnx']);
    expect(maxRelativeDifference(await runOnnx(out, input), logits)).toBeLessThan(1e-4);
  });

  it('exports a dynamic batch that runs at batch 1 and 3, and an unfolded graph that agrees', async () => {
    const dir = tempDir();
    const dynamic = join(dir, 'dynamic.onnx');
    const unfolded = join(dir, 'unfolded.onnx');
    expect((await cli('export', ...args, '--out', dynamic, '--batch', 'dynamic')).code).toBe(0);
    const r = await cli('export', ...args, '--out', unfolded, '--batch', 'dynamic', '--no-fold');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0 BatchNorms and 0 residuals folded/);
    for (const n of [1, 3]) {
      const x = batchOf(input, n);
      const [a, b] = [await runOnnx(dynamic, x), await runOnnx(unfolded, x)];
      expect(a.shape).toEqual([n, 10]);
      expect(maxRelativeDifference(a, b)).toBeLessThan(1e-5);
      expect(maxRelativeDifference(a, batchOf(logits, n))).toBeLessThan(1e-4);
    }
  });

  it('with --contrib-ops writes the fused graph volution runs (ONNX Runtime only), which agrees too', async () => {
    const out = join(tempDir(), 'fused.onnx');
    const r = await cli('export', ...args, '--out', out, '--contrib-ops');
    expect(r.code).toBe(0);
    const text = readFileSync(out).toString('latin1');
    expect(text).toContain('com.microsoft');
    expect(text).toContain('Attention');
    expect(maxRelativeDifference(await runOnnx(out, input), logits)).toBeLessThan(1e-4);
  });

  it('refuses a bad batch and writes nothing', async () => {
    const out = join(tempDir(), 'x.onnx');
    const r = await cli('export', ...args, '--out', out, '--batch', 'big');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--batch <n\|dynamic>' argument 'big' is invalid/);
    expect(existsSync(out)).toBe(false);
  });

});
