import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { toOnnx } from '../../src/backends/onnx/model.js';
import { OrtSession, nchwcBlockSize } from '../../src/backends/ort/session.js';
import { interpret } from '../../src/backends/reference/interpreter.js';
import { AttributeError, ShapeError } from '../../src/errors.js';
import { NDArray, numel } from '../../src/ir/ndarray.js';
import { trace } from '../../src/tensor/function.js';
import {
  type Conv2dOptions, type PoolOptions, type Tensor, type UnfoldOptions,
  avgPool2d, constant, conv2d, convTranspose2d, emit, fold, maxPool2d, maxPool2dGrad, unfold,
} from '../../src/tensor/tensor.js';
import { checkOp, expectClose, onnxOpCount, randn, runRef } from '../helpers/opcheck.js';

/** sin(a·i + b) over the flat index: the inputs of the PyTorch cross-checks. */
function seq(shape: number[], a = 0.37, b = 0.1): NDArray<'float64'> {
  return NDArray.float64(shape, Array.from({ length: numel(shape) }, (_, i) => Math.sin(a * i + b)));
}

/** Small integers with many exact ties. */
function ints(shape: number[]): NDArray<'float64'> {
  return NDArray.float64(shape, Array.from({ length: numel(shape) }, (_, i) => Math.round(3 * Math.sin(1.3 * i))));
}

type ConvT = Conv2dOptions & { outputPadding?: number | readonly [number, number] };

describe('conv2d', () => {
  const cases: [string, number[], number[], boolean, Conv2dOptions][] = [
    ['1×1, with bias', [2, 3, 4, 5], [4, 3, 1, 1], true, {}],
    ['3×3, padding 1', [2, 3, 5, 6], [4, 3, 3, 3], false, { padding: 1 }],
    // ≥ 128 output positions: the weight gradient sums per-sample products instead of folding the batch in,
    // with the columns on the left where they have more rows than gy, else gy.
    ['3×3, padding 1, 12×12 (weight gradient per sample, columns on the left)', [2, 2, 12, 12], [3, 2, 3, 3], true, { padding: 1 }],
    ['1×1, 2 → 6 channels, 12×12 (weight gradient per sample, gy on the left)', [2, 2, 12, 12], [6, 2, 1, 1], false, {}],
    ['groups 2, 12×12 (weight gradient per sample and group, columns on the left)', [2, 4, 12, 12], [6, 2, 3, 3], false, { padding: 1, groups: 2 }],
    ['3×3 stride 2, asymmetric padding, uneven', [1, 2, 7, 6], [3, 2, 3, 3], true, { stride: 2, padding: [1, 0, 2, 1] }],
    ['5×5 stride 3, uneven', [1, 2, 9, 8], [2, 2, 5, 5], false, { stride: 3, padding: 2 }],
    ['3×3 dilation 2', [1, 2, 7, 7], [3, 2, 3, 3], true, { dilation: 2, padding: 2 }],
    ['7×7 stride 2, non-square input', [1, 1, 11, 10], [2, 1, 7, 7], true, { stride: 2, padding: 3 }],
    ['groups 2', [2, 4, 5, 5], [6, 2, 3, 3], true, { padding: 1, groups: 2 }],
    ['depthwise with channel multiplier 2, stride 2', [2, 3, 6, 5], [6, 1, 3, 3], true, { stride: 2, padding: 1, groups: 3 }],
    ['depthwise with channel multiplier 3, stride 1, asymmetric padding', [2, 2, 5, 6], [6, 1, 3, 3], false, { padding: [1, 2, 0, 1], groups: 2 }],
    ['padding beyond the kernel extent, stride 1', [1, 2, 4, 4], [2, 2, 3, 3], true, { padding: [3, 0, 1, 2] }],
    ['depthwise, dilation 2, stride 3', [1, 4, 8, 7], [4, 1, 3, 3], false, { stride: 3, padding: [2, 1, 0, 2], dilation: 2, groups: 4 }],
    // Channels in fours: with weights as inputs these run on ORT's NCHWc kernels, channels padded to its block.
    ['depthwise, 20 channels, stride 2, asymmetric padding', [2, 20, 6, 5], [20, 1, 3, 3], true, { stride: 2, padding: [1, 0, 2, 1], groups: 20 }],
    ['depthwise 5×5, 16 channels, dilation 2, padding beyond the kernel', [1, 16, 6, 5], [16, 1, 5, 5], false, { padding: [4, 3, 2, 5], dilation: 2, groups: 16 }],
    ['dense 3×3, 8 → 12 channels, dilation 2', [1, 8, 6, 7], [12, 8, 3, 3], true, { padding: [2, 1, 2, 0], dilation: 2 }],
    ['dense 3×3 stride 2, 16 → 8 channels', [2, 16, 7, 6], [8, 16, 3, 3], true, { stride: 2, padding: [1, 0, 1, 1] }],
    ['7×7 stride 2 on 3 channels (an RGB stem: the blocked kernel reads NCHW)', [2, 3, 11, 10], [8, 3, 7, 7], false, { stride: 2, padding: 3 }],
    // Channels a multiple of the block: the weight gradient's filters reuse gy's NCHWc reorder.
    ['depthwise, 2 × 16 channels', [2, 16, 6, 5], [16, 1, 3, 3], true, { padding: 1, groups: 16 }],
    ['depthwise, 2 × 16 channels, stride 2', [2, 16, 7, 6], [16, 1, 3, 3], false, { stride: 2, padding: [1, 0, 1, 1], groups: 16 }],
  ];
  for (const [name, xs, ws, bias, opts] of cases) {
    it(name, async () => {
      const inputs = [randn(xs, 1), randn(ws, 2, 0.5), ...(bias ? [randn([ws[0]!], 3)] : [])];
      await checkOp({ fn: (x, w, b) => conv2d(x, w, b, opts), inputs });
    });
  }
  it('weights computed at run time use ORT\'s NCHWc kernels; baked weights are left to ORT', async () => {
    const block = await nchwcBlockSize();
    const g = trace((x, w) => conv2d(x, w, undefined, { padding: 1, groups: 8 }), [
      { dtype: 'float32', shape: [1, 8, 5, 5], name: 'x' },
      { dtype: 'float32', shape: [8, 1, 3, 3], name: 'w' },
    ]).graph;
    const has = (bytes: Uint8Array) => onnxOpCount(bytes, 'ReorderInput') > 0;
    expect(has(toOnnx(g, { contribOps: true, nchwcBlock: 16 }))).toBe(true);
    expect(has(toOnnx(g, { contribOps: true }))).toBe(false);
    expect(has(toOnnx(g, { nchwcBlock: 16 }))).toBe(false);
    // A weight computed from constants is folded and pre-packed by ORT itself; one computed from an
    // input thousands of ops deep still counts as run-time (found without deep recursion).
    const fromConstant = trace((x) => conv2d(x, constant(randn([8, 1, 3, 3], 7).astype('float32')).mul(2), undefined, { padding: 1, groups: 8 }), [{ dtype: 'float32', shape: [1, 8, 5, 5], name: 'x' }]).graph;
    expect(has(toOnnx(fromConstant, { contribOps: true, nchwcBlock: 16 }))).toBe(false);
    const deep = trace((x, w) => {
      let v = w;
      for (let i = 0; i < 20000; i++) v = v.add(1);
      return conv2d(x, v, undefined, { padding: 1, groups: 8 });
    }, [{ dtype: 'float32', shape: [1, 8, 5, 5], name: 'x' }, { dtype: 'float32', shape: [8, 1, 3, 3], name: 'w' }]).graph;
    expect(has(toOnnx(deep, { contribOps: true, nchwcBlock: 16 }))).toBe(true);
    // Strided dense convs too; an RGB stem's input goes in as NCHW (no ReorderInput); patchify convs stay plain.
    const dense = (c: number, k: number, stride: number) => toOnnx(trace((x, w) => conv2d(x, w, undefined, { stride }), [
      { dtype: 'float32', shape: [1, c, 16, 16], name: 'x' },
      { dtype: 'float32', shape: [16, c, k, k], name: 'w' },
    ]).graph, { contribOps: true, nchwcBlock: 16 });
    const reorders = (model: Uint8Array) => ['ReorderInput', 'ReorderOutput'].map((op) => onnxOpCount(model, op));
    expect(reorders(dense(16, 3, 2))).toEqual([1, 1]);
    expect(reorders(dense(3, 7, 2))).toEqual([0, 1]);
    expect(reorders(dense(16, 4, 4))).toEqual([0, 0]);
    // This machine's ONNX Runtime reports a block (8 with AVX2, 16 with AVX-512) or 0 without the kernels.
    expect([0, 8, 16]).toContain(block);
  });
  it('a depthwise weight gradient is one depthwise conv over the N·C images, run on the NCHWc kernels', () => {
    const g = trace((x, w) => grad(conv2d(x, w, undefined, { padding: 1, stride: 2, groups: 8 }).square().sum(), [w])[0]!, [
      { dtype: 'float32', shape: [3, 8, 9, 9], name: 'x' },
      { dtype: 'float32', shape: [8, 1, 3, 3], name: 'w' },
    ]).graph;
    const convs = g.nodes.filter((n) => n.op === 'conv2d').map((n) => [n.inputs[1]!.shape, n.attrs.groups]);
    // the forward's, and the gradient's: 3·8 filters the size of gy (5×5), stride and dilation traded
    expect(convs).toEqual([[[8, 1, 3, 3], 8], [[24, 1, 5, 5], 24]]);
    expect(g.nodes.some((n) => n.op === 'unfold' || n.op === 'matmul')).toBe(false);
    const onnx = toOnnx(g, { contribOps: true, nchwcBlock: 8 });
    expect(onnxOpCount(onnx, 'ReorderOutput')).toBeGreaterThan(0);
    expect(onnxOpCount(onnx, 'Transpose')).toBe(0);
  });
  it('the depthwise weight gradient\'s filters reuse the input gradient\'s NCHWc reorder of gy when C is a multiple of the block', () => {
    const reorders = (c: number, block: number) => {
      const g = trace((x, w) => grad(conv2d(x, w, undefined, { padding: 1, groups: c }).square().sum(), [x, w]), [
        { dtype: 'float32', shape: [2, c, 6, 6], name: 'x' },
        { dtype: 'float32', shape: [c, 1, 3, 3], name: 'w' },
      ]).graph;
      return onnxOpCount(toOnnx(g, { contribOps: true, nchwcBlock: block }), 'ReorderInput');
    };
    // x, gy, the two filters and x as N·C images (for the weight gradient); its filters, gy as N·C images, add none
    expect(reorders(16, 8)).toBe(5);
    expect(reorders(16, 16)).toBe(5);
    // 12 channels in blocks of 8: gy's images are blocked differently from gy, so they get their own
    expect(reorders(12, 8)).toBe(6);
  });
  it('first layer: no input gradient needed', async () => {
    await checkOp({ fn: (x, w, b) => conv2d(x, w, b, { stride: 2, padding: 1 }), inputs: [randn([2, 2, 5, 5], 4), randn([3, 2, 3, 3], 5), randn([3], 6)], wrt: [1, 2] });
  });
  it('matches PyTorch: groups 2, stride [2, 1], dilation [1, 2], asymmetric padding', async () => {
    const ref = await checkOp({
      fn: (x, w, b) => conv2d(x, w, b, { stride: [2, 1], dilation: [1, 2], padding: [1, 0, 2, 1], groups: 2 }),
      inputs: [seq([1, 2, 5, 4]), seq([4, 1, 3, 2], 0.91, 0.3), seq([4], 1.7, 0.2)],
    });
    // F.conv2d(F.pad(x, (0, 1, 1, 2)), w, b, stride=(2, 1), dilation=(1, 2), groups=2)
    expectClose(ref[0]!.data, [
      -1.07477891777, -0.408491191677, 0.309348064768, 2.72148965721, 1.83194915403, 0.497109638361, -1.05216002734, -0.470355769371, 0.340948616868,
      1.09943735082, 1.8201848909, 1.68131028276, 0.937415222159, 0.117682323196, -0.0294800907774, 1.23920919515, 1.91832053833, 1.80942516054,
      1.23625838851, 0.822699602535, -0.238159804626, -2.53999157122, -1.7481938196, -0.520454983254, 1.40710729649, 0.944761456922, -0.0970617547406,
      -0.43365918023, -1.13936031124, -1.43903528546, -1.64172231501, -0.346416372711, -0.143766593583, -0.182669879163, -0.896438857475, -1.268318825,
    ], 1e-10, 'conv2d vs PyTorch');
  });
});

describe('conv_transpose2d', () => {
  const cases: [string, number[], number[], boolean, ConvT][] = [
    ['3×3 stride 1', [2, 3, 4, 4], [3, 2, 3, 3], false, {}],
    ['1×1 stride 2, output padding 1', [1, 3, 3, 3], [3, 2, 1, 1], true, { stride: 2, outputPadding: 1 }],
    ['5×5 stride 3, asymmetric padding, non-square', [1, 2, 3, 4], [2, 3, 5, 5], true, { stride: 3, padding: [1, 0, 2, 1], outputPadding: [2, 1] }],
    ['dilation 2 with output padding ≥ stride, absorbed by the padding', [1, 2, 4, 3], [2, 2, 3, 3], true, { dilation: 2, outputPadding: 1, padding: 1 }],
    ['dilation 2 with output padding ≥ stride, beyond the padding', [1, 2, 4, 3], [2, 2, 3, 3], true, { dilation: [2, 3], outputPadding: [1, 2], padding: [1, 0, 0, 1] }],
    ['groups 3, channel multiplier 2', [2, 3, 4, 4], [3, 2, 3, 3], true, { stride: 2, padding: 1, groups: 3 }],
    ['depthwise (one output channel per group)', [2, 4, 3, 3], [4, 1, 3, 3], false, { stride: 2, padding: [0, 1, 1, 0], groups: 4 }],
    ['7×7 stride 2', [1, 1, 3, 2], [1, 2, 7, 7], false, { stride: 2, padding: 3, outputPadding: 1 }],
  ];
  for (const [name, xs, ws, bias, opts] of cases) {
    it(name, async () => {
      const inputs = [randn(xs, 11), randn(ws, 12, 0.5), ...(bias ? [randn([ws[1]! * (opts.groups ?? 1)], 13)] : [])];
      await checkOp({ fn: (x, w, b) => convTranspose2d(x, w, b, opts), inputs });
    });
  }
  it('matches PyTorch: groups 2, stride 2, padding 1, output padding 1', async () => {
    const ref = await checkOp({
      fn: (x, w, b) => convTranspose2d(x, w, b, { stride: 2, padding: 1, outputPadding: 1, groups: 2 }),
      inputs: [seq([1, 2, 3, 3]), seq([2, 2, 3, 3], 0.91, 0.3), seq([4], 1.7, 0.2)],
    });
    expect(ref[0]!.shape).toEqual([1, 4, 6, 6]);
    // F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2), first and last channel rows
    expectClose(ref[0]!.data.subarray(0, 12), [
      0.127164088471, 0.150213640842, -0.125708464425, -0.167011267387, -0.334678004463, -0.538934332224,
      1.11170782838, 1.16203058086, 1.30509269646, 1.39003934879, 1.34872835247, 1.70788552697,
    ], 1e-10, 'conv_transpose2d vs PyTorch (head)');
    expectClose(ref[0]!.data.subarray(132), [
      -0.694107331767, -0.455659791181, -0.771523076301, -0.528701956221, -0.857160285798, -0.929389100061,
      -0.728705116676, -0.998486828295, -0.786734561727, -1.10086999057, -0.850926668548, -0.760848318126,
    ], 1e-10, 'conv_transpose2d vs PyTorch (tail)');
  });
  it('matches PyTorch: output padding ≥ stride (stride 1, dilation 2), with and without padding to absorb it', async () => {
    const inputs = [seq([1, 2, 4, 3]), seq([2, 2, 3, 3], 0.91, 0.3), seq([2], 1.7, 0.2)];
    const lastRows = (r: { shape: readonly number[]; data: Float64Array }, rows: number) => {
      const [, c, h, w] = r.shape as [number, number, number, number];
      return Array.from({ length: c }, (_, ci) => Array.from(r.data.subarray((ci * h + h - rows) * w, (ci + 1) * h * w))).flat();
    };
    const pad1 = await checkOp({ fn: (x, w, b) => convTranspose2d(x, w, b, { dilation: 2, padding: 1, outputPadding: 1 }), inputs, wrt: [] });
    expect(pad1[0]!.shape).toEqual([1, 2, 7, 6]);
    expectClose(lastRows(pad1[0]!, 1), [
      0.366989558745, -0.460277653588, -0.839791082854, -1.95423768735, -1.24435222693, -1.29655223132,
      -0.474504726409, -0.927228504868, 0.325305006802, 0.864104503403, 1.60483871909, 1.48680011724,
    ], 1e-10, 'padding 1');
    const pad0 = await checkOp({ fn: (x, w, b) => convTranspose2d(x, w, b, { dilation: 2, outputPadding: 1 }), inputs, wrt: [] });
    expect(pad0[0]!.shape).toEqual([1, 2, 9, 8]);
    // The output-padding row gets only the bias.
    expectClose(lastRows(pad0[0]!, 2), [
      0.192496999029, 0.366989558745, -0.460277653588, -0.839791082854, -1.95423768735, -1.24435222693, -1.29655223132, 0.198669330795,
      0.198669330795, 0.198669330795, 0.198669330795, 0.198669330795, 0.198669330795, 0.198669330795, 0.198669330795, 0.198669330795,
      -0.217780369329, -0.474504726409, -0.927228504868, 0.325305006802, 0.864104503403, 1.60483871909, 1.48680011724, 0.946300087687,
      0.946300087687, 0.946300087687, 0.946300087687, 0.946300087687, 0.946300087687, 0.946300087687, 0.946300087687, 0.946300087687,
    ], 1e-10, 'padding 0');
  });
});

/** The gradient of sum(f(x)·gy) on the reference interpreter and on ORT. */
async function vjpBoth(f: (x: Tensor) => Tensor, x: NDArray, gy: NDArray): Promise<[Float64Array, Float64Array]> {
  const gy32 = gy.astype('float32');
  const traced = trace((t) => grad(f(t).mul(constant(gy32)).sum(), [t]), [{ dtype: 'float32', shape: x.shape, name: 'x' }]);
  const ref = interpret(traced.graph, new Map([[traced.inputs[0]!, x]]))[0]!.data;
  const session = await OrtSession.create(toOnnx(traced.graph), { threads: 1 });
  const out = await session.run({ x: x.astype('float32') });
  await session.release();
  return [ref, out['output_0']!.toFloat64()];
}

describe('max_pool2d_grad (max pooling\'s VJP as one op)', () => {
  it('is linear in g, whose cotangent reads h at each window\'s first maximum; piecewise constant in x', async () => {
    await checkOp({ fn: (x, g) => maxPool2dGrad(x, g, { kernel: [3, 3], stride: [2, 2], padding: [1, 1, 1, 1] }), inputs: [randn([2, 2, 7, 7], 90), randn([2, 2, 4, 4], 91)] });
  });
  it('a cotangent of the wrong shape is a typed error', () => {
    expect(() => trace((x, g) => maxPool2dGrad(x, g, { kernel: [2, 2], stride: [2, 2], padding: [0, 0, 0, 0] }), [{ dtype: 'float32', shape: [1, 2, 6, 6] }, { dtype: 'float32', shape: [1, 2, 2, 3] }])).toThrow(/max_pool2d_grad.*\[1, 2, 2, 3\].*\[1, 2, 3, 3\]/);
  });
});

describe('max_pool2d', () => {
  const cases: [string, number[], number | [number, number], PoolOptions][] = [
    ['2×2 stride 2', [2, 3, 6, 6], 2, {}],
    ['3×3 stride 2 padding 1 (overlapping)', [2, 2, 7, 6], 3, { stride: 2, padding: 1 }],
    ['3×3 stride 1, asymmetric padding', [1, 2, 5, 5], 3, { stride: 1, padding: [1, 0, 0, 1] }],
    ['[2, 3] window, stride [1, 2], uneven', [1, 2, 5, 8], [2, 3], { stride: [1, 2] }],
    ['2×2 stride 3: gaps between windows, a row and column none reaches', [1, 2, 9, 7], 2, { stride: 3 }],
    ['3×3 stride 2, no padding: the last row and column no window reaches', [2, 2, 8, 8], 3, { stride: 2 }],
  ];
  for (const [name, xs, k, opts] of cases) {
    it(name, async () => {
      await checkOp({ fn: (x) => maxPool2d(x, k, opts), inputs: [randn(xs, 21)] });
    });
  }

  // Exact ties are not differentiable (finite differences split them), so these compare with PyTorch's choice.
  const gy = seq([1, 1, 3, 3], 0.53, 0.4);
  it('ties: the gradient goes to the first maximum of each window only (PyTorch)', async () => {
    const x = ints([1, 1, 5, 6]);
    const ref = await checkOp({ fn: (t) => maxPool2d(t, 3, { stride: 2, padding: 1 }), inputs: [x], wrt: [] });
    expect(Array.from(ref[0]!.data)).toEqual([3, 3, 3, 3, 2, 3, 3, 3, 2]);
    const [gRef, gOrt] = await vjpBoth((t) => maxPool2d(t, 3, { stride: 2, padding: 1 }), x, gy);
    const torchGx = [
      0, 1.19103828319, 0, 0, 0, 0, 0.913413361341, 0, 0, 0, 0, 1.08533300564, 0, 0, 0,
      0.582330649524, 0, 0, 0, 0, 0, -0.997381061698, 0, 0, 0, -1.2484823107, 0, 0, 0, 0,
    ];
    expectClose(gRef, torchGx, 1e-6, 'max_pool2d tie gradient (reference)');
    expectClose(gOrt, torchGx, 1e-6, 'max_pool2d tie gradient (ORT)');
  });
  // The op's second output: flat indices into the whole input (ONNX MaxPool's Indices), which the
  // backward scatters into. PyTorch's return_indices are per plane: plus plane · H·W here.
  const withIndices = (k: number, stride: number, padding: number) => (t: Tensor) =>
    emit('max_pool2d', [t], { kernel: [k, k], stride: [stride, stride], padding: [padding, padding, padding, padding] });
  it('indices: the first maximum in row-major window order, on ORT and the reference (PyTorch return_indices)', async () => {
    const [v, i] = await checkOp({ fn: withIndices(3, 2, 1), inputs: [ints([1, 1, 5, 6])], wrt: [] });
    expect(Array.from(v!.data)).toEqual([3, 3, 3, 3, 2, 3, 3, 3, 2]);
    expect(Array.from(i!.data)).toEqual([1, 1, 11, 6, 15, 11, 25, 25, 21]);
    const [, i2] = await checkOp({ fn: withIndices(3, 1, 1), inputs: [ints([2, 2, 4, 5])], wrt: [] });
    expect(Array.from(i2!.data)).toEqual([
      1, 1, 1, 2, 3, 1, 1, 1, 2, 3, 6, 6, 6, 7, 19, 11, 11, 11, 12, 19, 25, 25, 21, 29, 29, 25, 25, 21, 34, 34, 25, 25, 26, 34, 34, 30, 30, 31, 34, 34,
      40, 40, 41, 44, 44, 40, 40, 41, 54, 54, 45, 45, 46, 54, 54, 50, 50, 58, 54, 54, 60, 60, 63, 64, 64, 60, 60, 73, 64, 64, 65, 65, 73, 69, 69, 70, 70, 73, 74, 74,
    ]);
  });
  it('ties with overlapping windows (stride 1): windows that chose the same element add up (PyTorch)', async () => {
    const x = ints([2, 2, 4, 5]);
    const [gRef, gOrt] = await vjpBoth((t) => maxPool2d(t, 3, { stride: 1, padding: 1 }), x, seq([2, 2, 4, 5], 0.53, 0.4));
    const torchGx = [
      0, 1.027888978141, -0.083967700357, -0.314779873326, 0, 0, -0.144894292937, 0.845133411657, 0, 0, 0, 1.412490126339, -0.49272807602, 0, 0, 0, 0, 0, 0, 0.134386721286,
      0, 0.355362277005, 0, 0, 0, -1.436844272095, -0.99670181288, 0, 0, 0.549405106667, 0.689778794159, 0.91698035645, 0, 0, 0.9428162727, 0, 0, 0, 0, 0,
      -0.875109303027, -0.443753335979, 0, 0, -1.919157550473, 1.728292070861, 0.30918306025, 0, 0, 0, -1.9293089286, 0, 0, 0, 0.681093294119, 0, 0, 0, -0.721472525942, 0,
      0.652232128888, 0, 0, 0.962891607122, -0.688381603029, 0.127084334898, 0, 0, 0, 1.923201349486, 0.797094029814, 0, 0, -0.578800458859, -1.772894244619, 0, 0, 0, 0, 0,
    ];
    expectClose(gRef, torchGx, 1e-6, 'max_pool2d stride-1 tie gradient (reference)');
    expectClose(gOrt, torchGx, 1e-6, 'max_pool2d stride-1 tie gradient (ORT)');
  });
  it('a real 0 maximum next to padding keeps the gradient (padding is -inf)', async () => {
    const x = ints([1, 1, 5, 6]);
    for (let i = 0; i < x.size; i++) x.data[i] = Math.min(x.data[i]!, 0);
    const [gRef, gOrt] = await vjpBoth((t) => maxPool2d(t, 3, { stride: 2, padding: 1 }), x, gy);
    const torchGx = [
      0.389418342309, 0.801619940884, 0, 0, 0, 0.993868363412, 0.913413361341, 0.582330649524, 0, 0, 0.0914646422324, 0, 0, 0, 0,
      0, 0, 0, 0, 0, -0.823984341212, -0.997381061698, 0, 0, 0, -0.424497969484, 0, 0, 0, 0,
    ];
    expectClose(gRef, torchGx, 1e-6, 'max_pool2d zero-max gradient (reference)');
    expectClose(gOrt, torchGx, 1e-6, 'max_pool2d zero-max gradient (ORT)');
  });
});

describe('avg_pool2d', () => {
  const cases: [string, number[], number | [number, number], PoolOptions][] = [
    ['2×2 stride 2', [2, 3, 6, 6], 2, {}],
    ['3×3 stride 2 padding 1, count_include_pad', [2, 2, 7, 6], 3, { stride: 2, padding: 1 }],
    ['3×3 stride 2 padding 1, exclude padding', [2, 2, 7, 6], 3, { stride: 2, padding: 1, countIncludePad: false }],
    ['3×3 stride 1 padding 1, exclude padding', [2, 2, 5, 6], 3, { stride: 1, padding: 1, countIncludePad: false }],
    ['3×3 stride 1 padding 1, include padding', [2, 2, 5, 6], 3, { stride: 1, padding: 1 }],
    ['[3, 2] window, stride [2, 3], asymmetric padding, exclude padding', [1, 2, 6, 8], [3, 2], { stride: [2, 3], padding: [1, 0, 0, 1], countIncludePad: false }],
    ['[3, 2] window, stride [2, 3], asymmetric padding, include padding', [1, 2, 6, 8], [3, 2], { stride: [2, 3], padding: [1, 0, 0, 1] }],
  ];
  for (const [name, xs, k, opts] of cases) {
    it(name, async () => {
      await checkOp({ fn: (x) => avgPool2d(x, k, opts), inputs: [randn(xs, 31)] });
    });
  }
  it('matches PyTorch: 3×3 stride 2 padding 1, with and without padding in the divisor', async () => {
    const x = seq([1, 1, 5, 6]);
    const excl = await checkOp({ fn: (t) => avgPool2d(t, 3, { stride: 2, padding: 1, countIncludePad: false }), inputs: [x], wrt: [] });
    const incl = await checkOp({ fn: (t) => avgPool2d(t, 3, { stride: 2, padding: 1 }), inputs: [x], wrt: [] });
    expectClose(excl[0]!.data, [0.430337557054, 0.394436821381, 0.185295297569, 0.0685066969336, 0.0561199816586, 0.0173152821402, 0.428272894953, 0.308928031622, 0.0317211824325], 1e-10, 'exclude padding');
    expectClose(incl[0]!.data, [0.191261136468, 0.262957880921, 0.123530198379, 0.0456711312891, 0.0561199816586, 0.0173152821402, 0.190343508868, 0.205952021082, 0.021147454955], 1e-10, 'include padding');
  });
});

describe('unfold', () => {
  const cases: [string, number[], number | [number, number], UnfoldOptions][] = [
    ['3×3 padding 1', [2, 2, 4, 5], 3, { padding: 1 }],
    ['2×2 stride 3, uneven', [1, 2, 8, 7], 2, { stride: 3 }],
    ['[3, 2] asymmetric padding, dilation 2', [1, 3, 6, 5], [3, 2], { padding: [0, 1, 2, 0], dilation: 2 }],
  ];
  for (const [name, xs, k, opts] of cases) {
    it(name, async () => {
      await checkOp({ fn: (x) => unfold(x, k, opts), inputs: [randn(xs, 41)] });
    });
  }
  it('1×1 without padding: the strided input itself, equal to the im2col op', async () => {
    const x = randn([2, 3, 5, 7], 42);
    const [strided] = await checkOp({ fn: (t) => unfold(t, 1, { stride: [2, 3] }), inputs: [x] });
    const [im2col] = runRef((t) => emit('unfold', [t], { kernel: [1, 1], stride: [2, 3], padding: [0, 0, 0, 0], dilation: [1, 1] }), [x]);
    expect(strided!.shape).toEqual([2, 3, 9]);
    expectClose(strided!.data, im2col!.data, 0, '1×1 unfold vs the im2col op');
  });
  it('matches PyTorch: [2, 3] window, dilation [1, 2], stride 2, padding 1 (channel order c·kh·kw + i·kw + j)', async () => {
    const ref = await checkOp({ fn: (x) => unfold(x, [2, 3], { dilation: [1, 2], padding: 1, stride: 2 }), inputs: [seq([1, 2, 4, 5])] });
    expect(ref[0]!.shape).toEqual([1, 12, 6]);
    expectClose(ref[0]!.data, [
      0, 0, 0, 0.73223144403, 0, -0.26015749143, 0, 0, 0.73223144403, 0.0815021517603, -0.26015749143, 0.458951486378,
      0, 0, 0.0815021517603, 0, 0.458951486378, 0, 0, 0.452886285379, 0, -0.856477974165, 0, 0,
      0.452886285379, 0.935616001553, -0.856477974165, -0.980538397794, 0, 0, 0.935616001553, 0, -0.980538397794, 0, 0, 0,
      0, 0, 0, -0.290952290566, 0, 0.753670785142, 0, 0, -0.290952290566, -0.859975692061, 0.753670785142, 0.999739337037,
      0, 0, -0.859975692061, 0, 0.999739337037, 0, 0, 0.999871708718, 0, -0.839504481575, 0, 0,
      0.999871708718, 0.727573290971, -0.839504481575, -0.253571464495, 0, 0, 0.727573290971, 0, -0.253571464495, 0, 0, 0,
    ], 1e-10, 'unfold vs PyTorch');
  });
});

describe('fold', () => {
  const cases: [string, number[], [number, number], number | [number, number], UnfoldOptions][] = [
    ['2×2 stride 2, rows no window reaches', [2, 2 * 4, 4], [5, 5], 2, { stride: 2 }],
    ['[2, 3] stride [1, 2], overlaps', [1, 2 * 6, 9], [4, 7], [2, 3], { stride: [1, 2] }],
    ['3×3 dilation 2 stride 2, asymmetric padding', [1, 2 * 9, 6], [7, 8], 3, { stride: 2, dilation: 2, padding: [1, 0, 0, 1] }],
  ];
  for (const [name, xs, size, k, opts] of cases) {
    it(name, async () => {
      await checkOp({ fn: (x) => fold(x, size, k, opts), inputs: [randn(xs, 51)] });
    });
  }
  it('matches PyTorch: 3×3 stride 1 padding 1 into 4×4 (overlaps summed)', async () => {
    const ref = await checkOp({ fn: (x) => fold(x, [4, 4], 3, { padding: 1 }), inputs: [seq([1, 18, 16], 0.29, 0.5)] });
    expectClose(ref[0]!.data, [
      1.99503660645, 0.227500923512, 0.370325767619, 0.0385315805556, 2.42540583424, 0.858608273542, 0.800686564788, 3.21885402592,
      -1.17145155698, 0.272118122821, 0.0268479121345, 2.18841487879, -2.25984227091, -0.466283756463, -0.545081594847, -1.18041965511,
      -2.05709019228, -0.561535114284, -0.578724526998, -1.82161874768, 0.385386610105, -0.459272402606, -0.231480392951, -2.73505237607,
      3.21972754061, 0.485442081664, 0.668883668098, 0.70682869547, 1.29577483537, 0.556008693283, 0.48635523809, 2.24993190802,
    ], 1e-10, 'fold vs PyTorch');
  });
});

describe('bad inputs', () => {
  const f32 = (shape: number[]) => ({ dtype: 'float32' as const, shape });
  const traceWith = (fn: (...xs: Tensor[]) => Tensor, ...shapes: number[][]) => () => trace(fn, shapes.map(f32));

  it('conv2d: wrong input channel count', () => {
    const t = traceWith((x, w) => conv2d(x, w), [1, 3, 5, 5], [4, 2, 3, 3]);
    expect(t).toThrow(ShapeError);
    expect(t).toThrow(/weight \[4, 2, 3, 3\] expects 2 input channels.*input has 3/);
  });
  it('conv2d: groups that do not divide the channels', () => {
    const t = traceWith((x, w) => conv2d(x, w, undefined, { groups: 2 }), [1, 4, 5, 5], [3, 2, 3, 3]);
    expect(t).toThrow(ShapeError);
    expect(t).toThrow(/groups 2 must divide in channels 4 and out channels 3/);
  });
  it('conv2d: kernel larger than the input', () => {
    const t = traceWith((x, w) => conv2d(x, w), [1, 1, 2, 4], [1, 1, 3, 3]);
    expect(t).toThrow(ShapeError);
    expect(t).toThrow(/3×3 window .* does not fit a 2×4 input.*float32\[1, 1, 2, 4\], float32\[1, 1, 3, 3\]/);
  });
  it('conv_transpose2d: weight channels differ from the input', () => {
    const t = traceWith((x, w) => convTranspose2d(x, w), [1, 3, 4, 4], [2, 2, 3, 3]);
    expect(t).toThrow(ShapeError);
    expect(t).toThrow(/weight \[2, 2, 3, 3\] expects 2 input channels, input has 3/);
  });
  it('conv_transpose2d: output padding not smaller than the stride', () => {
    expect(traceWith((x, w) => convTranspose2d(x, w, undefined, { stride: 2, outputPadding: 2 }), [1, 2, 4, 4], [2, 2, 3, 3])).toThrow(AttributeError);
  });
  it('conv2d: stride 0', () => {
    expect(traceWith((x, w) => conv2d(x, w, undefined, { stride: 0 }), [1, 2, 4, 4], [2, 2, 3, 3])).toThrow(AttributeError);
  });
  it('pooling: window larger than the input, padding over half the kernel', () => {
    expect(traceWith((x) => maxPool2d(x, 5), [1, 1, 4, 6])).toThrow(/5×5 window .* does not fit a 4×6 input/);
    expect(traceWith((x) => avgPool2d(x, 3, { padding: 2 }), [1, 1, 6, 6])).toThrow(AttributeError);
  });
  it('fold: block count that does not match the output size', () => {
    const t = traceWith((x) => fold(x, [5, 5], 2, { stride: 2 }), [1, 8, 5]);
    expect(t).toThrow(ShapeError);
    expect(t).toThrow(/5 blocks given, but a 5×5 output has 2×2 = 4/);
  });
});
