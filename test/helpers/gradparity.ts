/**
 * Train-mode gradient parity with the fixtures' grads.safetensors, using the
 * fixtures' own rule: max|got − ref| ≤ 1e-4·max|ref| + 100·fp64_abs per
 * tensor; integer buffers exact; `all_zero` gradients exactly zero.
 */
import { expect } from 'vitest';
import type { NDArray } from '../../src/ir/ndarray.js';
import type { Module } from '../../src/nn/module.js';
import { trainModeGradients } from '../../src/train/debug.js';
import { type FixtureCase, loadFixture } from './fixtures.js';
import { maxAbs, maxAbsDiff } from './opcheck.js';

export async function checkGradParity(caseName: string, build: (f: FixtureCase) => Module): Promise<{ checked: number }> {
  const f = loadFixture(caseName);
  const grads = f.grads!;
  const meta = f.manifest.grads!;
  const fp64 = new Map(meta.tensors.map((t) => [t.name, t.fp64_abs ?? 0]));
  const allZero = new Set((meta.all_zero?.keys ?? []).map((k) => (k.startsWith('grad.') ? k : `grad.${k}`)));
  const model = build(f).nameParameters();
  model.loadStateDict(f.weights);
  const target = grads.get('target')!;
  const input = f.io.get('input')!.astype('float32');
  const r = await trainModeGradients(model, input, target);

  const failures: string[] = [];
  let checked = 0;
  const check = (name: string, got: NDArray | undefined) => {
    const ref = grads.get(name)!;
    if (!got) return failures.push(`${name}: not produced`);
    checked++;
    if (got.shape.join() !== ref.shape.join()) return failures.push(`${name}: shape ${got.shape} vs ${ref.shape}`);
    if (ref.dtype === 'int64') {
      if (got.toFloat64().join() !== ref.toFloat64().join()) failures.push(`${name}: ${got.toFloat64().join()} vs ${ref.toFloat64().join()}`);
      return;
    }
    const g = got.toFloat64();
    const rr = ref.toFloat64();
    if (allZero.has(name)) {
      if (maxAbs(g) !== 0) failures.push(`${name}: expected exact zeros, max ${maxAbs(g)}`);
      return;
    }
    const bound = 1e-4 * maxAbs(rr) + 100 * (fp64.get(name) ?? 0);
    const d = maxAbsDiff(g, rr);
    if (!(d <= bound)) failures.push(`${name}: max|Δ| ${d.toExponential(2)} > ${bound.toExponential(2)}`);
  };
  check('loss', r.loss.reshape([]));
  check(grads.has('logits_train') ? 'logits_train' : 'output_train', r.logits);
  for (const name of grads.keys()) {
    if (name.startsWith('grad.')) check(name, r.grads.get(name.slice(5)));
    else if (name.startsWith('bn_after.')) check(name, r.buffersAfter.get(name.slice(9)));
  }
  expect(failures, failures.slice(0, 15).join('\n')).toEqual([]);
  return { checked };
}
