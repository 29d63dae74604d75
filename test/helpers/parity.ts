/**
 * Golden-file parity against the official PyTorch fixtures: strict weight
 * load, eval forward of `io.input` on ONNX Runtime, and every recorded
 * activation the model also records, each within max|Δ| ≤ 1e-4·max|ref|.
 * The logits are also checked through the inference runner (`predict`,
 * `benchmark`): its folded, fused graph must meet the same bound.
 */
import { expect } from 'vitest';
import { createInferenceRunner } from '../../src/backends/passes/export.js';
import type { NDArray } from '../../src/ir/ndarray.js';
import type { Module } from '../../src/nn/module.js';
import { runModule } from '../../src/nn/run.js';
import { expectClose } from './opcheck.js';
import { type FixtureCase, activation, loadFixture } from './fixtures.js';

export interface ParityResult {
  fixture: FixtureCase;
  /** Activation keys compared (beyond the output). */
  compared: string[];
}

/**
 * `build` makes the model from the manifest (kwargs); `activationKeys` are
 * the fixture keys to compare (all must be recorded by the model).
 */
export async function checkParity(caseName: string, build: (f: FixtureCase) => Module, activationKeys: readonly string[], rtol = 1e-4): Promise<ParityResult> {
  const fixture = loadFixture(caseName);
  const model = build(fixture).nameParameters().eval();
  model.loadStateDict(fixture.weights);
  const input = f32(fixture.io.get('input')!);
  const { output, activations } = await runModule(model, input, { activations: activationKeys });
  const ref = fixture.io.get('logits') ?? fixture.io.get('output')!;
  expect(output.shape).toEqual(ref.shape);
  expectClose(output.toFloat64(), ref.toFloat64(), rtol, `${caseName}: output`);
  const runner = await createInferenceRunner((x) => model.call(x), input.shape.slice(1), { threads: 1 });
  try {
    expectClose((await runner.run(input)).toFloat64(), ref.toFloat64(), rtol, `${caseName}: output of the inference runner`);
  } finally {
    await runner.release();
  }
  for (const key of activationKeys) {
    const r = activation(fixture, key);
    if (!r) throw new Error(`${caseName}: the fixture has no activation '${key}'`);
    const got = activations.get(key)!;
    expect(got.shape, key).toEqual(r.shape);
    expectClose(got.toFloat64(), r.toFloat64(), rtol, `${caseName}: ${key}`);
  }
  return { fixture, compared: [...activationKeys] };
}

function f32(a: NDArray): NDArray {
  return a.dtype === 'float32' ? a : a.astype('float32');
}
