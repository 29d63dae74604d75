import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { interpret } from '../../src/backends/reference/interpreter.js';
import { AttributeError, RuntimeFailure, ShapeError } from '../../src/errors.js';
import type { Value } from '../../src/ir/graph.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { trace } from '../../src/tensor/function.js';
import { type Tensor, batchNorm, batchNormTrain, batchNormTrainGrad, constant, emit, layerNorm, layerNormGrad } from '../../src/tensor/tensor.js';
import { checkOp, expectClose, randn } from '../helpers/opcheck.js';

const pos = (shape: number[], seed: number) => {
  const a = randn(shape, seed);
  for (let i = 0; i < a.size; i++) a.data[i] = Math.abs(a.data[i]!) + 0.5;
  return a;
};
const f64 = (shape: number[], values: number[]) => NDArray.float64(shape, values);
const i64 = (shape: number[], values: number[]) => NDArray.int64(shape, values);

/** Runs `fn` once on the reference interpreter. */
function runRef(fn: (...xs: Tensor[]) => Tensor | Tensor[], inputs: readonly NDArray[]) {
  const traced = trace(fn, inputs.map((a) => ({ dtype: a.dtype === 'float64' ? 'float32' : a.dtype, shape: a.shape })));
  return interpret(traced.graph, new Map<Value, NDArray>(traced.inputs.map((v, i) => [v, inputs[i]!])));
}

function expectThrows(fn: () => unknown, type: typeof ShapeError | typeof AttributeError, ...fragments: string[]) {
  expect(fn).toThrow(type);
  try {
    fn();
  } catch (e) {
    for (const f of fragments) expect((e as Error).message).toContain(f);
  }
}

describe('pad', () => {
  it('constant, asymmetric on two axes, with a value', async () => {
    await checkOp({ fn: (x) => x.pad([1, 2, 0, 1], 'constant', 0.5), inputs: [randn([2, 3, 4], 1)] });
  });
  it('reflect on one axis, asymmetric', async () => {
    const [y] = await checkOp({ fn: (x) => x.pad([2, 1], 'reflect'), inputs: [f64([2, 4], [1, 2, 3, 4, 5, 6, 7, 8])] });
    expect(Array.from(y!.data)).toEqual([3, 2, 1, 2, 3, 4, 3, 7, 6, 5, 6, 7, 8, 7]);
  });
  it('reflect on two axes, asymmetric, rank 4', async () => {
    await checkOp({ fn: (x) => x.pad([1, 3, 2, 0], 'reflect'), inputs: [randn([1, 2, 4, 5], 2)] });
  });
  it('reflect with the largest allowed pad (d − 1) on both sides', async () => {
    await checkOp({ fn: (x) => x.pad([2, 2], 'reflect'), inputs: [randn([2, 3], 3)] });
  });
});

describe('gather (index_select)', () => {
  it('2-D indices with a negative and a repeated index, axis 0', async () => {
    const [y] = await checkOp({ fn: (x, i) => x.indexSelect(0, i), inputs: [randn([4, 3], 4), i64([2, 2], [0, -1, 2, 2])] });
    expect(y!.shape).toEqual([2, 2, 3]);
  });
  it('middle axis of a rank-3 input, negative axis', async () => {
    await checkOp({ fn: (x, i) => x.indexSelect(-2, i), inputs: [randn([2, 5, 3], 5), i64([2, 3], [4, 0, -2, 1, 1, 3])] });
  });
  it('last axis with 1-D indices', async () => {
    await checkOp({ fn: (x, i) => x.indexSelect(-1, i), inputs: [randn([3, 4], 6), i64([5], [3, 0, 0, -4, 2])] });
  });
});

describe('gather_elements and scatter_add', () => {
  it('gather_elements with repeated indices accumulates the gradient', async () => {
    await checkOp({ fn: (x, i) => x.gather(1, i), inputs: [randn([3, 4], 7), i64([3, 2], [0, 0, 3, 1, 2, 2])] });
  });
  it('gather_elements on a negative axis with indices smaller than the data', async () => {
    await checkOp({ fn: (x, i) => x.gather(-2, i), inputs: [randn([4, 3], 8), i64([2, 2], [3, 0, -1, 3])] });
  });
  it('scatter_add accumulates repeated indices', async () => {
    const [y] = await checkOp({
      fn: (d, i, u) => d.scatterAdd(0, i, u),
      inputs: [f64([3, 2], [1, 2, 3, 4, 5, 6]), i64([3, 2], [0, 2, 0, 2, 2, -1]), f64([3, 2], [10, 20, 30, 40, 50, 60])],
    });
    expect(Array.from(y!.data)).toEqual([41, 2, 3, 4, 55, 126]);
  });
  it('scatter_add on a negative axis, differentiating data and updates', async () => {
    await checkOp({ fn: (d, i, u) => d.scatterAdd(-1, i, u), inputs: [randn([2, 3, 4], 9), i64([2, 2, 3], [0, 3, 3, 1, 1, 1, 2, 0, 2, 3, 3, 0]), randn([2, 2, 3], 10)] });
  });
});

describe('reduce_max', () => {
  it('several axes, one negative, without keepdims', async () => {
    await checkOp({ fn: (x) => x.amax([0, -1]), inputs: [randn([3, 4, 2], 11)] });
  });
  it('one axis with keepdims', async () => {
    await checkOp({ fn: (x) => x.amax(1, true), inputs: [randn([3, 4, 2], 12)] });
  });
  it('ties: values match and the gradient is shared among the tied maxima', async () => {
    const x = f64([2, 4], [3, 1, 3, 2, 5, 5, 5, 0]);
    const [y] = await checkOp({ fn: (t) => t.amax(-1), inputs: [x], wrt: [] });
    expect(Array.from(y!.data)).toEqual([3, 5]);
    // Finite differences are undefined at an exact tie; compare with PyTorch's amax gradient instead.
    const [g] = runRef((t) => grad(t.amax(-1).sum(), [t]), [x]);
    expectClose(g!.data, [0.5, 0, 0.5, 0, 1 / 3, 1 / 3, 1 / 3, 0], 1e-12, 'amax gradient with ties');
  });
});

describe('softmax and log_softmax', () => {
  for (const axis of [0, 1, -1]) {
    it(`softmax on axis ${axis}`, async () => {
      await checkOp({ fn: (x) => x.softmax(axis), inputs: [randn([3, 4, 5], 13 + axis)] });
    });
    it(`log_softmax on axis ${axis}`, async () => {
      await checkOp({ fn: (x) => x.logSoftmax(axis), inputs: [randn([3, 4, 5], 16 + axis)] });
    });
  }
  it('forward values equal PyTorch', async () => {
    const x = f64([2, 4], [1, 2, 3, 0.5, -1, 0, 4, 2]);
    const [sm, sm0, lsm] = await checkOp({ fn: (t) => [t.softmax(-1), t.softmax(0), t.logSoftmax(-1)], inputs: [x], wrt: [] });
    // torch.softmax / torch.log_softmax in float64
    const torchSm = [0.08536889350978889, 0.23205671194331445, 0.6307955432474668, 0.05177885129942981, 0.005806628431527066, 0.01578405255003367, 0.8617800692577713, 0.11662924976066819];
    const torchSm0 = [0.8807970779778823, 0.8807970779778823, 0.2689414213699951, 0.18242552380635632, 0.11920292202211755, 0.11920292202211755, 0.7310585786300049, 0.8175744761936437];
    const torchLsm = [-2.460773489156851, -1.4607734891568511, -0.4607734891568512, -2.960773489156851, -5.1487551809444, -4.1487551809444, -0.14875518094440063, -2.1487551809444008];
    expectClose(sm!.data, torchSm, 1e-12, 'softmax(-1)');
    expectClose(sm0!.data, torchSm0, 1e-12, 'softmax(0)');
    expectClose(lsm!.data, torchLsm, 1e-12, 'log_softmax(-1)');
  });
  it('is stable for large logits', async () => {
    const [sm, lsm] = await checkOp({ fn: (t) => [t.softmax(), t.logSoftmax()], inputs: [f64([3], [1000, 1001, 1002])], wrt: [] });
    expect(Array.from(sm!.data).every(Number.isFinite)).toBe(true);
    expectClose(lsm!.data, [-2.4076059644443806, -1.4076059644443804, -0.4076059644443804], 1e-12, 'log_softmax of large logits');
  });
});

describe('layer_norm', () => {
  it('one trailing dim, weight and bias, eps 1e-5', async () => {
    await checkOp({ fn: (x, w, b) => layerNorm(x, w, b, 1e-5), inputs: [randn([2, 3, 4], 19), randn([4], 20), randn([4], 21)] });
  });
  it('two trailing dims, weight and bias, eps 1e-6', async () => {
    await checkOp({ fn: (x, w, b) => layerNorm(x, w, b, 1e-6), inputs: [randn([2, 3, 4], 22), randn([3, 4], 23), randn([3, 4], 24)] });
  });
  it('weight without bias', async () => {
    await checkOp({ fn: (x, w) => layerNorm(x, w, undefined, 1e-5), inputs: [randn([3, 5], 25), randn([5], 26)] });
  });
  it('no weight or bias, one and two trailing dims', async () => {
    await checkOp({ fn: (x) => layerNorm(x, undefined, undefined, 1e-5, 1), inputs: [randn([2, 3, 4], 27)] });
    await checkOp({ fn: (x) => layerNorm(x, undefined, undefined, 1e-6, 2), inputs: [randn([2, 3, 4], 28)] });
  });
  it('over every dim (axis 0)', async () => {
    await checkOp({ fn: (x, w, b) => layerNorm(x, w, b, 1e-5), inputs: [randn([3, 4], 29), randn([3, 4], 30), randn([3, 4], 31)] });
  });
  it('forward values equal PyTorch', async () => {
    const [y] = await checkOp({ fn: (x, w, b) => layerNorm(x, w, b, 1e-5), inputs: [f64([2, 3], [1, 2, 4, 0, -1, 3]), f64([3], [1, 0.5, 2]), f64([3], [0, 1, -1])], wrt: [] });
    // torch.nn.functional.layer_norm(x, [3], w, b, 1e-5) in float64
    expectClose(y!.data, [-1.069041531450298, 0.8663698085687127, 1.6726038286257436, -0.3922315914145858, 0.5097105107317678, 1.7456211399021], 1e-12, 'layer_norm');
  });
});

describe('layer_norm_grad (layer norm\'s VJP as one op)', () => {
  // Its statistics are free inputs here, so the op's own VJP is checked in every input.
  it('over the last axis, with a weight', async () => {
    await checkOp({ fn: (x, g, m, r, w) => layerNormGrad(x, g, m, r, w, 2), inputs: [randn([2, 3, 5], 40), randn([2, 3, 5], 41), randn([2, 3, 1], 42), pos([2, 3, 1], 43), randn([5], 44)] });
  });
  it('over two trailing axes, without a weight', async () => {
    await checkOp({ fn: (x, g, m, r) => layerNormGrad(x, g, m, r, undefined, 1), inputs: [randn([2, 3, 4], 45), randn([2, 3, 4], 46), randn([2, 1, 1], 47), pos([2, 1, 1], 48)] });
  });
  it('second order: the gradient of layer norm\'s gradient, through its statistics too', async () => {
    const c = randn([3, 2, 4], 49);
    await checkOp({ fn: (x, w, b, k) => grad(layerNorm(x, w, b, 1e-5).mul(k).sum(), [x, w, b]), inputs: [randn([3, 2, 4], 50), randn([4], 51), randn([4], 52), c], fdRtol: 1e-5 });
    await checkOp({ fn: (x, k) => grad(layerNorm(x, undefined, undefined, 1e-5, 2).mul(k).sum(), [x]), inputs: [randn([3, 2, 4], 53), c], fdRtol: 1e-5 });
  });
  it('only the bias\'s cotangent: the lowering computes that one alone', async () => {
    await checkOp({ fn: (x, w, b) => grad(layerNorm(x, w, b).sum(), [b])[0]!, inputs: [randn([2, 3, 4], 54), randn([4], 55), randn([4], 56)], wrt: [] });
  });
});

describe('batch_norm (eval, running statistics)', () => {
  const bn = (x: Tensor, w: Tensor, b: Tensor, m: Tensor, v: Tensor) => batchNorm(x, w, b, m, v, 1e-5);
  it('rank 2 input', async () => {
    await checkOp({ fn: bn, inputs: [randn([4, 3], 32), randn([3], 33), randn([3], 34), randn([3], 35), pos([3], 36)] });
  });
  it('rank 4 input', async () => {
    await checkOp({ fn: bn, inputs: [randn([2, 3, 2, 2], 37), randn([3], 38), randn([3], 39), randn([3], 40), pos([3], 41)] });
  });
});

describe('batch_norm_train', () => {
  const bn = (x: Tensor, w: Tensor, b: Tensor) => batchNormTrain(x, w, b, 1e-5);
  // checkOp puts random cotangents on y, the batch mean and the batch variance.
  it('rank 2 input, cotangents on all three outputs', async () => {
    await checkOp({ fn: bn, inputs: [randn([4, 3], 42), randn([3], 43), randn([3], 44)] });
  });
  it('rank 4 input, cotangents on all three outputs', async () => {
    await checkOp({ fn: bn, inputs: [randn([2, 3, 2, 2], 45), randn([3], 46), randn([3], 47)] });
  });
  it('only y reaches the loss (the train step: running statistics are not differentiated)', async () => {
    await checkOp({ fn: bn, inputs: [randn([3, 4, 3, 2], 60), randn([4], 61), randn([4], 62)], gradOutputs: [0] });
  });
  it('a mean far from zero relative to the spread (float32 cancellation)', async () => {
    const x = randn([4, 3, 3, 3], 63);
    for (let i = 0; i < x.size; i++) x.data[i] = 50 + 0.5 * x.data[i]!;
    await checkOp({ fn: bn, inputs: [x, randn([3], 64), randn([3], 65)], gradOutputs: [0], rtol: 2e-5 });
  });
  it('only the statistics reach the loss', async () => {
    await checkOp({ fn: (x, w, b) => bn(x, w, b).slice(1), inputs: [randn([3, 2, 2], 48), randn([2], 49), randn([2], 50)], wrt: [0] });
  });
  it('forward values equal PyTorch (biased variance)', async () => {
    const x = f64([2, 2, 2], [1, 2, 3, -1, 0, 4, 2, 2.5]);
    const [y, mean, variance] = await checkOp({ fn: bn, inputs: [x, f64([2], [1.5, -0.5]), f64([2], [0.1, 0.2])], wrt: [] });
    // torch.nn.functional.batch_norm(x, None, None, w, b, training=True, eps=1e-5) in float64
    const torchY = [-0.6606370906585874, 0.35354569688619586, -0.24176971885660598, 1.0433785541807932, -1.6748198782033707, 2.3819112719757625, 0.0795173494027438, -0.08112618472693109];
    expectClose(y!.data, torchY, 1e-12, 'batch_norm_train y');
    expectClose(mean!.data, [1.75, 1.625], 1e-12, 'batch mean');
    expectClose(variance!.data, [2.1875, 2.421875], 1e-12, 'biased batch variance');
  });
});

describe('batch_norm_train_grad (train-mode batch norm\'s VJP as one op)', () => {
  // Its statistics are free inputs here (the variance positive), so the op's own VJP is checked in every input.
  it('rank 4, with a weight', async () => {
    await checkOp({ fn: (x, g, m, v, w) => batchNormTrainGrad(x, g, m, v, w, 1e-5), inputs: [randn([2, 3, 2, 2], 70), randn([2, 3, 2, 2], 71), randn([3], 72), pos([3], 73), randn([3], 74)] });
  });
  it('rank 2, without a weight', async () => {
    await checkOp({ fn: (x, g, m, v) => batchNormTrainGrad(x, g, m, v, undefined, 1e-3), inputs: [randn([5, 3], 75), randn([5, 3], 76), randn([3], 77), pos([3], 78)] });
  });
  it('second order: the gradient of batch norm\'s gradient, cotangents on the statistics too', async () => {
    const k = randn([3, 2, 2, 2], 79);
    await checkOp({ fn: (x, w, b, c) => grad(batchNormTrain(x, w, b).reduce((acc, t, i) => acc.add(t.mul(i ? t : c).sum()), constant(NDArray.float32([], [0]))), [x, w, b]), inputs: [randn([3, 2, 2, 2], 80), randn([2], 81), randn([2], 82), k], fdRtol: 1e-5 });
  });
});

describe('topk', () => {
  it('largest on the last axis', async () => {
    await checkOp({ fn: (x) => x.topk(3), inputs: [randn([3, 5], 51)] });
  });
  it('smallest on a middle axis', async () => {
    const [v, i] = await checkOp({ fn: (x) => x.topk(2, 1, false), inputs: [randn([2, 4, 3], 52)] });
    expect(v!.shape).toEqual([2, 2, 3]);
    expect(i!.shape).toEqual([2, 2, 3]);
  });
  it('k equal to the axis length sorts the whole axis', async () => {
    await checkOp({ fn: (x) => x.topk(4, 0), inputs: [randn([4, 2], 53)] });
  });
  it('ties go to the lower index (ONNX TopK)', async () => {
    const x = f64([2, 4], [3, 1, 3, 2, 5, 5, 5, 0]);
    const [, hi] = await checkOp({ fn: (t) => t.topk(2), inputs: [x], wrt: [] });
    const [, lo] = await checkOp({ fn: (t) => t.topk(2, -1, false), inputs: [x], wrt: [] });
    expect(Array.from(hi!.data)).toEqual([0, 2, 0, 1]);
    expect(Array.from(lo!.data)).toEqual([1, 3, 3, 0]);
  });
});

describe('self_attention (an inference fusion: ONNX Runtime\'s contrib Attention)', () => {
  const [x, w, b] = [randn([2, 5, 8], 61), randn([8, 24], 62), randn([24], 63)];
  const fused = (t: Tensor, wt: Tensor, bt: Tensor) => emit('self_attention', [t, wt, bt], { heads: 2, scale: 0.25 })[0]!;
  /** The same attention in primitive ops, channels (3, heads, head size); the scale is exact in float32, as its constant there is. */
  const unfused = (t: Tensor, wt: Tensor, bt: Tensor) => {
    const qkv = t.matmul(wt).add(bt).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
    return q.matmul(k.mT).mul(0.25).softmax(-1).matmul(v).transpose(1, 2).reshape(2, 5, 8);
  };

  it('ONNX Runtime equals the reference, and the reference equals the primitive ops', async () => {
    const [y] = await checkOp({ fn: fused, inputs: [x, w, b], wrt: [] });
    expectClose(y!.data, runRef(unfused, [x, w, b])[0]!.data, 1e-12, 'fused vs primitive ops');
  });
  it('has no VJP rule: it is never traced, only made by inference passes', () => {
    expect(() => trace((t, wt, bt) => grad(fused(t, wt, bt).sum(), [t]), [x, w, b].map((a) => ({ dtype: 'float32' as const, shape: a.shape })))).toThrow(/op 'self_attention' has no VJP rule/);
  });
  it('checks shapes and heads', () => {
    const spec = (shape: number[]) => ({ dtype: 'float32' as const, shape });
    expectThrows(() => trace(fused, [spec([2, 5, 8]), spec([8, 16]), spec([24])]), ShapeError, '[8, 16]', '[8, 24]');
    expectThrows(() => trace((t, wt, bt) => emit('self_attention', [t, wt, bt], { heads: 3, scale: 1 })[0]!, [spec([2, 5, 8]), spec([8, 24]), spec([24])]), ShapeError, '3 heads');
  });
});

describe('bad inputs', () => {
  it('gather with float indices', () => {
    expectThrows(() => trace((x, i) => x.indexSelect(0, i), [{ dtype: 'float32', shape: [3, 4] }, { dtype: 'float32', shape: [2] }]), ShapeError, 'int64', '[3, 4]', '[2]');
  });
  it('layer norm weight of the wrong shape', () => {
    expectThrows(() => trace((x, w) => layerNorm(x, w, undefined), [{ dtype: 'float32', shape: [2, 3, 4] }, { dtype: 'float32', shape: [3] }]), ShapeError, '[3]', '[4]');
  });
  it('layer norm with a non-positive epsilon', () => {
    expectThrows(() => trace((x) => layerNorm(x, undefined, undefined, 0), [{ dtype: 'float32', shape: [2, 3] }]), AttributeError, 'epsilon');
  });
  it('reflect padding as large as the dimension', () => {
    expectThrows(() => trace((x) => x.pad([3, 0], 'reflect'), [{ dtype: 'float32', shape: [2, 3] }]), ShapeError, 'reflect', '[2, 3]');
  });
  it('topk with k larger than the axis', () => {
    expectThrows(() => trace((x) => x.topk(4, 1), [{ dtype: 'float32', shape: [2, 3, 5] }]), ShapeError, 'k = 4', '[2, 3, 5]');
  });
  it('batch norm statistics of the wrong length', () => {
    const spec = (shape: number[]) => ({ dtype: 'float32' as const, shape });
    expectThrows(() => trace((x, w, b) => batchNormTrain(x, w, b), [spec([4, 3]), spec([2]), spec([3])]), ShapeError, '[2]', '[4, 3]');
  });
  it('the norms\' gradient ops with statistics of the wrong shape', () => {
    const spec = (shape: number[]) => ({ dtype: 'float32' as const, shape });
    expectThrows(() => trace((x, g, m, r) => layerNormGrad(x, g, m, r, undefined, 2), [spec([2, 3, 4]), spec([2, 3, 4]), spec([2, 3]), spec([2, 3, 1])]), ShapeError, 'layer_norm_grad', '[2, 3, 1]', '[2, 3]');
    expectThrows(() => trace((x, g, m, v) => batchNormTrainGrad(x, g, m, v, undefined, 1e-5), [spec([4, 3]), spec([4, 3]), spec([3]), spec([4])]), ShapeError, 'batch_norm_train_grad', '[3]', '[4]');
  });
  it('an out-of-range gather index fails at run time on the reference', () => {
    expect(() => runRef((x, i) => x.indexSelect(0, i), [randn([3, 2], 54), i64([1], [3])])).toThrow(RuntimeFailure);
  });
});
