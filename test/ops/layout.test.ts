import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { settledTranspose } from '../../src/backends/onnx/emit/layout.js';
import { toOnnx } from '../../src/backends/onnx/model.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { trace } from '../../src/tensor/function.js';
import { type Tensor, concat, stack } from '../../src/tensor/tensor.js';
import { checkOp, onnxOpCount, randn } from '../helpers/opcheck.js';

describe('matmul', () => {
  it('2-D', async () => {
    await checkOp({ fn: (a, b) => a.matmul(b), inputs: [randn([3, 4], 1), randn([4, 5], 2)] });
  });
  it('batched with broadcasting batch dims', async () => {
    await checkOp({ fn: (a, b) => a.matmul(b), inputs: [randn([2, 1, 3, 4], 3), randn([3, 4, 2], 4)] });
  });
  it('a matrix shared by every batch (a Linear on [B, N, C]): its gradient is ONE matmul over all B·N rows', async () => {
    await checkOp({ fn: (a, w) => a.matmul(w), inputs: [randn([2, 3, 4], 15), randn([4, 5], 16)] });
    await checkOp({ fn: (a, w) => a.matmul(w), inputs: [randn([2, 3, 4], 17), randn([1, 4, 5], 18)] });
    const spec = (shape: number[]) => ({ dtype: 'float32' as const, shape });
    const g = trace((a, w, c) => grad(a!.matmul(w!), [w!], c), [spec([2, 3, 4]), spec([4, 5]), spec([2, 3, 5])]).graph;
    const backward = g.nodes.filter((n) => n.op === 'matmul' && n.outputs[0]!.shape.join() === '4,5');
    expect(backward.map((n) => n.inputs.map((v) => v.shape))).toEqual([[[4, 6], [6, 5]]]);
    expect(g.nodes.some((n) => n.op === 'reduce_sum')).toBe(false);
  });
  it('attention-shaped q·kᵀ: k\'s cotangent is built as a product, not a product transposed', async () => {
    await checkOp({ fn: (q, k) => q.matmul(k.mT), inputs: [randn([2, 2, 5, 3], 5), randn([2, 2, 5, 3], 6)] });
    // with broadcasting batch dims (kᵀ's cotangent is summed over them), and one kᵀ read twice (its two
    // cotangents add up before the transpose): neither arrives as a bare product
    await checkOp({ fn: (q, k) => { const kt = k.mT; return q.matmul(kt).add(q.mul(0.5).matmul(kt)); }, inputs: [randn([2, 1, 5, 3], 7), randn([2, 4, 3], 8)] });
    const spec = (shape: number[]) => ({ dtype: 'float32' as const, shape });
    const g = trace((q, k, c) => grad(q!.matmul(k!.mT), [k!], c), [spec([2, 2, 5, 3]), spec([2, 2, 5, 3]), spec([2, 2, 5, 5])]).graph;
    // no transpose of a product's result (a transpose of an input ONNX Runtime folds into the product's flags)
    expect(g.liveNodes().filter((n) => n.op === 'transpose' && n.inputs[0]!.producer?.op === 'matmul')).toEqual([]);
    expect(g.liveNodes().filter((n) => n.op === 'matmul')).toHaveLength(1);
  });
  it('a transposed batch times a shared matrix is one 2-D MatMul over all rows (ONNX Runtime would fold the transpose and run a GEMM per batch)', async () => {
    await checkOp({ fn: (a, w) => a.mT.matmul(w), inputs: [randn([2, 4, 3], 19), randn([4, 5], 20)] });
    const spec = (shape: number[]) => ({ dtype: 'float32' as const, shape });
    const model = toOnnx(trace((a, w) => a!.mT.matmul(w!), [spec([2, 4, 3]), spec([4, 5])]).graph, { contribOps: true });
    // [2, 3, 4] → [6, 4] before the product and [6, 5] → [2, 3, 5] after
    expect([onnxOpCount(model, 'Transpose'), onnxOpCount(model, 'Reshape'), onnxOpCount(model, 'MatMul')]).toEqual([1, 2, 1]);
    // a batched B, or a batch of one, keeps the plain MatMul (ONNX Runtime's folded transpose is then no worse)
    for (const [a, w] of [[[2, 4, 3], [2, 4, 5]], [[1, 4, 3], [4, 5]]]) {
      expect(onnxOpCount(toOnnx(trace((x, y) => x!.mT.matmul(y!), [spec(a!), spec(w!)]).graph, { contribOps: true }), 'Reshape')).toBe(0);
    }
  });
});

describe('layout ops', () => {
  it('reshape with -1', async () => {
    await checkOp({ fn: (x) => x.reshape(3, -1).mul(x.reshape(3, 8)), inputs: [randn([2, 3, 4], 7)] });
  });
  it('permute and transpose, negative axes', async () => {
    await checkOp({ fn: (x) => x.permute(2, 0, 1).transpose(-1, -3), inputs: [randn([2, 3, 4], 8)] });
  });
  it('a transpose that moves size-1 axes leaves them in place in ONNX (a Reshape of the input first), or is only a Reshape', async () => {
    // [N, 1, C, HW] → [1, N, HW, C], MixFormer's folded-batch weight gradient: ONNX Runtime's Transpose is 5–7× slower than on [1, N, C, HW] by [0, 1, 3, 2]
    expect(settledTranspose([32, 1, 192, 49], [1, 0, 3, 2])).toEqual({ view: [1, 32, 192, 49], perm: [0, 1, 3, 2] });
    expect(settledTranspose([8, 3, 1, 12], [0, 1, 3, 2])).toEqual({ view: [8, 3, 12, 1], perm: [0, 1, 2, 3] });
    expect(settledTranspose([2, 1, 3], [1, 0, 2])).toEqual({ view: [1, 2, 3], perm: [0, 1, 2] });
    // size-1 axes that stay, or none at all: nothing to change; nor where the settled transpose is not of the last two axes (measured both faster and slower)
    expect(settledTranspose([32, 49, 1, 12, 4], [2, 0, 3, 1, 4])).toBeUndefined();
    expect(settledTranspose([1, 32, 192, 49], [0, 1, 3, 2])).toBeUndefined();
    expect(settledTranspose([2, 3, 4], [2, 0, 1])).toBeUndefined();
    const moves = (x: Tensor) => x.permute(1, 0, 3, 2).mul(2);
    await checkOp({ fn: moves, inputs: [randn([3, 1, 4, 5], 23)] });
    await checkOp({ fn: (x) => x.permute(0, 2, 1, 3).permute(3, 1, 2, 0), inputs: [randn([2, 1, 3, 1], 24)] });
    const model = (f: (x: Tensor) => Tensor, shape: number[]) => toOnnx(trace(f, [{ dtype: 'float32', shape }]).graph);
    const moved = model(moves, [3, 1, 4, 5]);
    expect([onnxOpCount(moved, 'Transpose'), onnxOpCount(moved, 'Reshape')]).toEqual([1, 1]);
    expect(onnxOpCount(model((x) => x.permute(0, 1, 3, 2), [8, 3, 1, 12]), 'Transpose')).toBe(0);
  });
  it('expand with -1 and new leading dims', async () => {
    await checkOp({ fn: (x) => x.expand(2, -1, 4), inputs: [randn([3, 1], 9)] });
  });
  it('unsqueeze, squeeze, flatten', async () => {
    await checkOp({ fn: (x) => x.unsqueeze(1).flatten(2).squeeze(1), inputs: [randn([2, 3, 4], 10)] });
  });
  it('slice with steps, negative starts and clamped ends', async () => {
    await checkOp({ fn: (x) => x.slice(0, 1, undefined, 2).slice(-1, -4, 100, 3), inputs: [randn([5, 7], 11)] });
  });
  it('concat and stack', async () => {
    await checkOp({ fn: (a, b) => concat([a, b, a], 1).add(stack([a, a, a], -1).sum(-1).slice(1, 0, 1).expand(2, 8)), inputs: [randn([2, 3], 12), randn([2, 2], 13)] });
  });
  it('split and chunk', async () => {
    await checkOp({ fn: (x) => { const [a, b] = x.split([2, 4], 1); const [c, d] = b!.chunk(2, 1); return a!.mul(c!).sub(d!); }, inputs: [randn([3, 6], 14)] });
  });
  it('slices of one tensor get their cotangents joined by one concat (gaps zero-filled), not padded and added', async () => {
    // q, k, v = qkv[0], qkv[1], qkv[3] (index 2 unused: a gap), as in attention
    const f = (x: Tensor) => { const [q, k, v] = [0, 1, 3].map((i) => x.select(0, i)) as [Tensor, Tensor, Tensor]; return q.mul(k).sub(v.mul(2)); };
    await checkOp({ fn: f, inputs: [randn([4, 2, 3], 19)] });
    const g = trace((x) => grad(f(x).sum(), [x])[0]!, [{ dtype: 'float32', shape: [4, 2, 3] }]).graph;
    const ops = g.liveNodes().map((n) => n.op);
    expect(ops).toContain('concat');
    expect(ops).not.toContain('pad');
  });
  it('overlapping slices still add up', async () => {
    await checkOp({ fn: (x) => x.slice(1, 0, 3).mul(x.slice(1, 2, 5)).add(x.slice(1, 4, 5)), inputs: [randn([2, 5], 20)] });
  });
  it('map → windows (NCHW → NHWC → split → window permute) keeps a Flatten between its transposes in ONNX', async () => {
    // ONNX Runtime would otherwise merge the two transposes into one slow 6-D Transpose (see reshapeSource)
    const windows = (x: Tensor) => x.permute(0, 2, 3, 1).reshape(2, 2, 3, 2, 3, 4).permute(0, 1, 3, 2, 4, 5).reshape(-1, 9, 4);
    await checkOp({ fn: windows, inputs: [randn([2, 4, 6, 6], 21)] });
    const onnxOps = (f: (x: Tensor) => Tensor, shape: number[]) => {
      const model = toOnnx(trace(f, [{ dtype: 'float32', shape }]).graph);
      return { flatten: onnxOpCount(model, 'Flatten') > 0, reshape: onnxOpCount(model, 'Reshape') > 0 };
    };
    expect(onnxOps(windows, [2, 4, 6, 6])).toEqual({ flatten: true, reshape: true });
    // not where the transpose keeps the last axis, nor where the reshape merges axes
    expect(onnxOps((x) => x.permute(1, 0, 2, 3).reshape(4, 2, 3, 2, 6), [2, 4, 6, 6]).flatten).toBe(false);
    expect(onnxOps((x) => x.permute(0, 2, 3, 1).reshape(2, 36, 4), [2, 4, 6, 6]).flatten).toBe(false);
  });
  it('roll matches torch.roll', async () => {
    const x = NDArray.float64([2, 3], [0, 1, 2, 3, 4, 5]);
    const [y] = await checkOp({ fn: (t) => t.roll([1, -1], [0, 1]), inputs: [x] });
    // torch.roll(torch.arange(6.).view(2,3), (1,-1), (0,1)) = [[4,5,3],[1,2,0]]
    expect(Array.from(y!.data)).toEqual([4, 5, 3, 1, 2, 0]);
  });
});

describe('reductions', () => {
  it('sum over axes, keepdim', async () => {
    await checkOp({ fn: (x) => x.sum([0, 2], true), inputs: [randn([2, 3, 4], 15)] });
  });
  it('sum over leading axes (a bias gradient) is a ones-row MatMul where shapes are fixed, a ReduceSum otherwise', async () => {
    await checkOp({ fn: (x) => x.sum([1, 0]).add(x.sum(0, true).sum(1).reshape(4)), inputs: [randn([3, 5, 4], 22)] });
    const graph = trace((x) => x.sum([0, 1]), [{ dtype: 'float32', shape: [3, 5, 4] }]).graph;
    const has = (model: Uint8Array, op: string) => onnxOpCount(model, op) > 0;
    expect([has(toOnnx(graph), 'MatMul'), has(toOnnx(graph), 'ReduceSum')]).toEqual([true, false]);
    // dynamic-batch export rewrites shapes, so the baked row count would be wrong there
    const dynamic = toOnnx(graph, { shapeTargets: new Map() });
    expect([has(dynamic, 'MatMul'), has(dynamic, 'ReduceSum')]).toEqual([false, true]);
    // a sum that keeps a middle axis (BatchNorm's) stays a ReduceSum
    expect(has(toOnnx(trace((x) => x.sum([0, 2]), [{ dtype: 'float32', shape: [3, 5, 4] }]).graph), 'MatMul')).toBe(false);
  });
  it('sum of everything', async () => {
    await checkOp({ fn: (x) => x.sum(), inputs: [randn([2, 3], 16)] });
  });
  it('mean over a negative axis', async () => {
    await checkOp({ fn: (x) => x.mean(-1), inputs: [randn([2, 3, 4], 17)] });
  });
  it('var (biased and unbiased)', async () => {
    await checkOp({ fn: (x) => x.var(1, false).add(x.var(1, false, true)), inputs: [randn([3, 5], 18)] });
  });
});
