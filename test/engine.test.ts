import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { expectClose } from './helpers/opcheck.js';
import { tempDir } from './helpers/tmp.js';
import { grad } from '../src/autodiff/grad.js';
import { compile, compileSteps, exportOnnx } from '../src/backends/compile.js';
import { readFields } from '../src/backends/onnx/protobuf.js';
import { AttributeError, NonFiniteError, ShapeError, TraceError } from '../src/errors.js';
import { NDArray } from '../src/ir/ndarray.js';
import { BatchNorm2d, Dropout, Linear } from '../src/nn/layers.js';
import { Module } from '../src/nn/module.js';
import { Rng } from '../src/rng.js';
import { type TensorFn, trace } from '../src/tensor/function.js';
import { activeTrace } from '../src/tensor/trace.js';
import { Parameter, type Tensor, constant, conv2d } from '../src/tensor/tensor.js';

const f32 = (shape: number[], values?: number[]) => NDArray.float32(shape, values ?? Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => (i % 7) - 3));

class Scoped extends Module {
  inner = new Linear(4, 3, { rng: new Rng(0) });
  forward(x: Tensor): Tensor {
    return this.inner.call(x);
  }
}

describe('trace-time errors', () => {
  it('a shape mismatch names the op, the shapes and the module path', () => {
    const m = new Scoped().nameParameters();
    const run = () => trace((x) => m.call(x), [{ dtype: 'float32', shape: [2, 5] }]);
    expect(run).toThrow(ShapeError);
    expect(run).toThrow(/matmul in module 'inner'.*\[2, 5\] @ \[4, 3\]/);
  });
  it('broadcast failures list both shapes', () => {
    expect(() => trace((a, b) => a!.add(b!), [{ dtype: 'float32', shape: [2, 3] }, { dtype: 'float32', shape: [4] }])).toThrow(/\[2, 3\] and \[4\] do not broadcast/);
  });
  it('invalid attributes are AttributeErrors', () => {
    expect(() => trace((x) => x!.softmax(3), [{ dtype: 'float32', shape: [2, 3] }])).toThrow(AttributeError);
    expect(() => trace((x) => x!.slice(0, 0, 2, 0), [{ dtype: 'float32', shape: [2, 3] }])).toThrow(/step must be a positive integer/);
    expect(() => trace((x, w) => conv2d(x!, w!, undefined, { groups: 0 }), [{ dtype: 'float32', shape: [1, 2, 4, 4] }, { dtype: 'float32', shape: [2, 2, 3, 3] }])).toThrow(AttributeError);
  });
  it('non-finite constants are refused', () => {
    expect(() => trace((x) => x!.add(constant(NDArray.float32([1], [NaN]))), [{ dtype: 'float32', shape: [1] }])).toThrow(NonFiniteError);
    expect(() => trace((x) => x!.mul(Infinity), [{ dtype: 'float32', shape: [1] }])).toThrow(/element 0 is Infinity/);
  });
  it('ops outside a trace and tensors leaking across traces are TraceErrors', () => {
    let leaked: Tensor | undefined;
    trace((x) => (leaked = x!), [{ dtype: 'float32', shape: [1] }]);
    expect(() => leaked!.add(1)).toThrow(TraceError);
    expect(() => trace((x) => x!.add(leaked!), [{ dtype: 'float32', shape: [1] }])).toThrow(/another trace/);
  });
  it('grad needs a scalar or a seed', () => {
    expect(() => trace((x) => grad(x!.mul(2), [x!]), [{ dtype: 'float32', shape: [3] }])).toThrow(/must be a scalar/);
  });
  it('grad of an unrelated tensor is zeros', async () => {
    const f = compile((x, y) => grad(x!.sum(), [y!]), { backend: 'reference' });
    const [g] = await f(f32([2]), f32([3]));
    expect(Array.from(g!.data as Float64Array)).toEqual([0, 0, 0]);
  });
});

describe('compile', () => {
  it('caches one trace per input signature and runs both backends alike', async () => {
    const w = new Parameter(f32([3, 2]), { name: 'w' });
    const fn = (x: Tensor) => x.matmul(w).relu();
    const onOrt = compile(fn);
    const onRef = compile(fn, { backend: 'reference' });
    for (const shape of [[4, 3], [1, 3]]) {
      const x = f32(shape);
      const [a] = await onOrt(x);
      const [b] = await onRef(x);
      expect(a!.shape).toEqual([shape[0], 2]);
      expect(Array.from(a!.toFloat64())).toEqual(Array.from(b!.toFloat64()));
    }
    expect(onOrt.traced(f32([4, 3]))).toBe(onOrt.traced(f32([4, 3])));
    await onOrt.release();
  });
  it('rebuilds the session when a parameter is replaced', async () => {
    const w = new Parameter(NDArray.float32([1], [2]), { name: 'w' });
    const f = compile((x) => x!.mul(w));
    expect(Array.from((await f(NDArray.float32([1], [3])))[0]!.toFloat64())).toEqual([6]);
    w.data = NDArray.float32([1], [5]);
    expect(Array.from((await f(NDArray.float32([1], [3])))[0]!.toFloat64())).toEqual([15]);
    await f.release();
  });
  it('train-mode batch norm updates running statistics after each call, like PyTorch', async () => {
    const bn = new BatchNorm2d(2).nameParameters().train();
    const f = compile((x) => bn.call(x!));
    const x = NDArray.float32([2, 2, 1, 2], [1, 2, 3, 4, 5, 6, 7, 8]);
    await f(x);
    // channel 0 holds 1,2,5,6: mean 3.5, unbiased var 5.6667; momentum 0.1
    expect(bn.running_mean.data.get(0)).toBeCloseTo(0.35, 6);
    expect(bn.running_var.data.get(0)).toBeCloseTo(0.9 + 0.1 * (17 / 3), 5);
    expect(bn.num_batches_tracked.data.get(0)).toBe(1);
    await f(x);
    expect(bn.num_batches_tracked.data.get(0)).toBe(2);
    expect(bn.running_mean.data.get(0)).toBeCloseTo(0.35 * 0.9 + 0.35, 6);
    await f.release();
  });
  it('dropout noise comes from the seed: same seed, same result; eval is the identity', async () => {
    const d = new Dropout(0.5).train();
    const x = f32([64], Array(64).fill(1));
    const run = async (seed: number) => Array.from((await compile((t) => d.call(t!), { seed })(x))[0]!.toFloat64());
    const a = await run(1);
    expect(a).toEqual(await run(1));
    expect(a).not.toEqual(await run(2));
    expect(new Set(a)).toEqual(new Set([0, 2]));
    d.eval();
    expect(await run(1)).toEqual(Array(64).fill(1));
  });
  it('rejects inputs of the wrong rank with a typed error', async () => {
    const f = compile((x) => x!.matmul(constant(f32([3, 2]))));
    await expect(f(f32([3]))).rejects.toThrow(ShapeError);
  });
});

describe('compileSteps', () => {
  // A step with the kinds of state a train step has: a weight it reads and assigns (as a flat view, the way
  // the optimizer hands back parameters), a counter assigned in another dtype, a parameter it only reads,
  // and dropout noise; it returns a per-step tensor and a scalar.
  const stateful = () => {
    const w = new Parameter(f32([2, 3]), { name: 'w' });
    const bias = new Parameter(f32([3], [0.5, -1, 2]), { name: 'bias' });
    const count = new Parameter(NDArray.int64([], [0]), { name: 'count', trainable: false });
    const drop = new Dropout(0.5).train();
    const step = (x: Tensor, lr: Tensor) => {
      const y = drop.call(x.matmul(w).add(bias));
      const t = activeTrace();
      t.assign(w, w.sub(x.mT.matmul(y).mul(lr)).reshape([6]).value);
      t.assign(count, count.cast('float32').add(1).value);
      return [y, y.square().mean()];
    };
    return { w, count, step };
  };
  const steps = (n: number) => Array.from({ length: n }, (_, k) => [f32([4, 2], Array.from({ length: 8 }, (_, i) => Math.sin(i + 3 * k))), NDArray.float32([], [0.1 / (k + 1)])]);

  it('n steps in one run (an ONNX Loop) equal n calls one by one, whatever n, on both backends', async () => {
    const byLoop = stateful();
    const oneByOne = stateful();
    const onRef = stateful();
    const loop = compileSteps(byLoop.step as TensorFn, { seed: 3 });
    const single = compile(oneByOne.step as TensorFn, { seed: 3 });
    const ref = compileSteps(onRef.step as TensorFn, { seed: 3, backend: 'reference' });
    const all = steps(6);
    // 3 steps, then 1, then 2: one session serves every run length, and the state carries across runs.
    const looped = [...(await loop(all.slice(0, 3))), ...(await loop(all.slice(3, 4))), ...(await loop(all.slice(4)))];
    const expected: NDArray[][] = [];
    for (const s of all) expected.push(await single(...s));
    const reference = await ref(all);
    expect(looped).toHaveLength(6);
    looped.forEach((outs, k) => {
      outs.forEach((o, i) => {
        expect(o.shape).toEqual(expected[k]![i]!.shape);
        expectClose(o.toFloat64(), expected[k]![i]!.toFloat64(), 1e-6, `step ${k + 1}, output ${i}, one by one`);
        expectClose(o.toFloat64(), reference[k]![i]!.toFloat64(), 1e-5, `step ${k + 1}, output ${i}, reference`);
      });
    });
    expect(new Set(looped.map(([y]) => y!.get(0)))).not.toEqual(new Set([looped[0]![0]!.get(0)]));
    expect(byLoop.w.data.shape).toEqual([2, 3]);
    expectClose(byLoop.w.data.toFloat64(), oneByOne.w.data.toFloat64(), 1e-6, 'w');
    expect(byLoop.count.data).toMatchObject({ dtype: 'int64', shape: [] });
    expect(byLoop.count.data.get(0)).toBe(6);
    expect(onRef.count.data.get(0)).toBe(6);
    await loop.release();
    await single.release();
  });
  it('refuses steps of different shapes, and state assigned without being read', async () => {
    const { step } = stateful();
    const f = compileSteps(step as TensorFn);
    await expect(f([steps(1)[0]!, [f32([3, 2]), NDArray.float32([], [0.1])]])).rejects.toThrow(/step 2 takes .*\[3, 2\].* where step 1 takes .*\[4, 2\]/);
    const c = new Parameter(f32([2]), { name: 'c' });
    const blind = compileSteps(((x: Tensor) => {
      activeTrace().assign(c, x.value);
      return [x.sum()];
    }) as TensorFn);
    await expect(blind([[f32([2])]])).rejects.toThrow(/assigns 'c' without reading it/);
    await f.release();
  });
});

describe('exportOnnx', () => {
  it('writes a standalone model that ONNX Runtime loads and runs', async () => {
    const lin = new Linear(3, 2, { rng: new Rng(1) }).nameParameters();
    const dir = tempDir();
    const path = join(dir, 'lin.onnx');
    const x = f32([1, 3]);
    const bytes = exportOnnx((t) => lin.call(t!).gelu(), [x], { path, inputNames: ['input'], outputNames: ['logits'] });
    expect(existsSync(path)).toBe(true);
    expect(readFileSync(path)).toEqual(Buffer.from(bytes));
    // ModelProto: ir_version 8, opset 17
    const fields = readFields(bytes);
    expect(fields.find((f) => f.field === 1)!.int).toBe(8n);
    const s = await ort.InferenceSession.create(path);
    const out = await s.run({ input: new ort.Tensor('float32', x.data, [1, 3]) });
    const [ref] = await compile((t) => lin.call(t!).gelu(), { backend: 'reference' })(x);
    const got = out.logits!.data as Float32Array;
    ref!.toFloat64().forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
  });
});
