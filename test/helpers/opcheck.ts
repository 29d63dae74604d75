/**
 * The per-op conformance check used by every op test:
 *  1. ONNX Runtime (float32, with its contrib ops as in-process sessions use
 *     them) equals the reference interpreter (float64);
 *  2. the VJP on the reference interpreter equals central finite differences
 *     in float64 (relative error ≤ 1e-6 of the gradient's max);
 *  3. the same gradient graph on ONNX Runtime agrees in float32.
 */
import { expect } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { toOnnx } from '../../src/backends/onnx/model.js';
import { OrtSession, nchwcBlockSize } from '../../src/backends/ort/session.js';
import { interpret } from '../../src/backends/reference/interpreter.js';
import type { RefArray } from '../../src/backends/reference/types.js';
import type { Value } from '../../src/ir/graph.js';
import { NDArray, isFloat } from '../../src/ir/ndarray.js';
import { Rng } from '../../src/rng.js';
import { constant } from '../../src/tensor/tensor.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { trace } from '../../src/tensor/function.js';

export function randn(shape: readonly number[], seed: number, scale = 1): NDArray<'float64'> {
  const r = new Rng(seed);
  const a = NDArray.float64(shape);
  for (let i = 0; i < a.size; i++) a.data[i] = r.normal() * scale;
  return a;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Asserts max|got − ref| ≤ rtol·max|ref| + atol. */
export function expectClose(got: ArrayLike<number>, ref: ArrayLike<number>, rtol: number, what: string, atol = 0): void {
  expect(got.length, `${what}: length`).toBe(ref.length);
  const d = maxAbsDiff(got, ref);
  const bound = rtol * maxAbs(ref) + atol;
  if (!(d <= bound)) throw new Error(`${what}: max|Δ| = ${d.toExponential(3)} > ${bound.toExponential(3)} (max|ref| = ${maxAbs(ref).toExponential(3)})`);
}

function toF32(a: NDArray): NDArray {
  return isFloat(a.dtype) ? new NDArray('float32', a.shape, Float32Array.from(a.toFloat64())) : a;
}

/**
 * Runs on ONNX Runtime; `contribOps` (with the NCHWc kernels for convs whose
 * weights are inputs) as the in-process sessions (compile, the train step) emit by default.
 */
/** `kernels`: the path of volution's kernel library, for graphs that may use it (`kernelLibrary()`). */
export async function runOrt(fn: (...xs: Tensor[]) => Tensor | Tensor[], inputs: readonly NDArray[], contribOps = true, kernels?: string): Promise<NDArray[]> {
  const f32 = inputs.map(toF32);
  const traced = trace(fn, f32.map((a, i) => ({ dtype: a.dtype, shape: a.shape, name: `input_${i}` })));
  const model = toOnnx(traced.graph, { contribOps, nchwcBlock: await nchwcBlockSize(), kernels: kernels !== undefined });
  const session = await OrtSession.create(model, { threads: 1, kernelLibrary: kernels });
  const feeds: Record<string, NDArray> = {};
  f32.forEach((a, i) => (feeds[`input_${i}`] = a));
  const out = await session.run(feeds);
  await session.release();
  return traced.graph.outputs.map((_, i) => out[`output_${i}`]!);
}

export function runRef(fn: (...xs: Tensor[]) => Tensor | Tensor[], inputs: readonly NDArray[]): RefArray[] {
  const traced = trace(fn, inputs.map((a, i) => ({ dtype: isFloat(a.dtype) ? 'float32' : a.dtype, shape: a.shape, name: `input_${i}` })));
  const feeds = new Map<Value, NDArray>();
  traced.inputs.forEach((v, i) => feeds.set(v, inputs[i]!));
  return interpret(traced.graph, feeds);
}

export interface OpCheck {
  /** The op under test, as a function of tensors. */
  fn: (...xs: Tensor[]) => Tensor | Tensor[];
  /** Inputs (float64 values; floats are rounded to float32 for ONNX Runtime). */
  inputs: readonly NDArray[];
  /** Indices of the inputs to differentiate (default: every float input). [] skips gradients. */
  wrt?: readonly number[];
  /** Relative tolerance for ORT vs reference (default 1e-5). */
  rtol?: number;
  /** Relative tolerance for the finite-difference check (default 1e-6). */
  fdRtol?: number;
  /** Finite-difference step (default 1e-6). */
  h?: number;
  /** Which outputs feed the gradient check (default all float outputs). */
  gradOutputs?: readonly number[];
}

/** Runs the three checks; returns the reference outputs for extra assertions. */
export async function checkOp(c: OpCheck): Promise<RefArray[]> {
  const rtol = c.rtol ?? 1e-5;
  const ref = runRef(c.fn, c.inputs);
  const ort = await runOrt(c.fn, c.inputs);
  ref.forEach((r, i) => {
    expect(ort[i]!.shape, `output ${i} shape`).toEqual(r.shape);
    expectClose(ort[i]!.toFloat64(), r.data, rtol, `ORT vs reference, output ${i}`, 1e-6);
  });

  const wrt = c.wrt ?? c.inputs.flatMap((a, i) => (isFloat(a.dtype) ? [i] : []));
  if (wrt.length === 0) return ref;
  const outIdx = c.gradOutputs ?? ref.flatMap((_, i) => i).filter((i) => isFloat(ort[i]!.dtype));
  const cots = outIdx.map((i, k) => randn(ref[i]!.shape, 1000 + k));
  // loss = Σ_k sum(out_k · cot_k): its gradient is the VJP with those cotangents.
  const lossFn = (...xs: Tensor[]): Tensor => {
    const outs = c.fn(...xs);
    const list = Array.isArray(outs) ? outs : [outs as Tensor];
    return outIdx.map((i, k) => list[i]!.mul(constant(toF32(cots[k]!))).sum()).reduce((a, b) => a.add(b));
  };
  const gradFn = (...xs: Tensor[]): Tensor[] => grad(lossFn(...xs), wrt.map((i) => xs[i]!));

  // Analytic gradients on the reference interpreter. The cotangents are float32-rounded constants in both.
  const analytic = runRef(gradFn, c.inputs);
  const loss = (inputs: readonly NDArray[]) => runRef(lossFn, inputs)[0]!.data[0]!;
  const h = c.h ?? 1e-6;
  wrt.forEach((idx, k) => {
    const x = c.inputs[idx]!;
    const fd = new Float64Array(x.size);
    for (let e = 0; e < x.size; e++) {
      const plus = NDArray.float64(x.shape, x.toFloat64());
      const minus = NDArray.float64(x.shape, x.toFloat64());
      plus.data[e]! += h;
      minus.data[e]! -= h;
      const ins = (v: NDArray) => c.inputs.map((a, j) => (j === idx ? v : a));
      fd[e] = (loss(ins(plus)) - loss(ins(minus))) / (2 * h);
    }
    expectClose(analytic[k]!.data, fd, c.fdRtol ?? 1e-6, `VJP vs finite differences, input ${idx}`, 1e-9);
  });

  const ortGrads = await runOrt(gradFn, c.inputs);
  ortGrads.forEach((g, k) => expectClose(g.toFloat64(), analytic[k]!.data, Math.max(rtol, 1e-4), `gradient on ORT vs reference, input ${wrt[k]}`, 1e-6));
  return ref;
}

/** How many nodes of `opType` a serialized ONNX model holds (read from NodeProto.op_type, field 4, so node and value names never count). */
export function onnxOpCount(model: Uint8Array, opType: string): number {
  return countField(model, 0x22, opType);
}

/** How many nodes of operator domain `domain` a serialized ONNX model holds (NodeProto.domain, field 7; the opset imports' field 1 never counts). */
export function onnxDomainCount(model: Uint8Array, domain: string): number {
  return countField(model, 0x3a, domain);
}

function countField(model: Uint8Array, tag: number, text: string): number {
  const field = Buffer.from([tag, text.length, ...Buffer.from(text)]);
  const bytes = Buffer.from(model);
  let n = 0;
  for (let at = bytes.indexOf(field); at >= 0; at = bytes.indexOf(field, at + field.length)) n++;
  return n;
}
