import { type DType, NDArray } from '../../ir/ndarray.js';
import { type ConvAttrs, isDepthwise, windowOut } from '../../ir/ops.js';
import { type Tensor, constant, conv2d, convTranspose2d, emit, fold, full, maxPool2dGrad, unfold } from '../../tensor/tensor.js';
import type { RuleTable } from './types.js';

type Pair = readonly [number, number];
type Quad = readonly [number, number, number, number];

function constOf(dtype: DType, shape: readonly number[], values: ArrayLike<number>): Tensor {
  const a = NDArray.float64(shape, values);
  return constant(dtype === 'float64' ? a : a.astype(dtype));
}

/**
 * outputPadding for a transposed conv that restores an input of size [h, w]:
 * the rows/columns a strided window leaves over at the end.
 */
function leftover([h, w]: Pair, k: Pair, s: Pair, p: Quad, d: Pair = [1, 1]): [number, number] {
  return [(h + p[0] + p[2] - d[0] * (k[0] - 1) - 1) % s[0], (w + p[1] + p[3] - d[1] * (k[1] - 1) - 1) % s[1]];
}

function spatial(t: Tensor): Pair {
  return [t.shape[2]!, t.shape[3]!];
}

/**
 * dL/dW for y = conv2d(x, W) with dL/dy = gy, W of shape `wShape`
 * [O, C/g, kh, kw]: per sample and group, gy [O/g, L] times im2col(x)
 * [C/g·kh·kw, L], contracted over the L positions (in either order, below),
 * summed over the batch. Measured on ORT (8 samples): this batched GEMM +
 * ReduceSum is up to ~2× faster than folding the batch into the contraction,
 * which needs a full transpose of the columns, from L = 28×28 up; at L = 7×7
 * the per-sample GEMMs are too short and folding is 2× faster. The unfolded
 * x may cover more positions than gy (conv_transpose2d with an outputPadding
 * ≥ the stride); the extra ones are cropped.
 */
function convWeightGrad(x: Tensor, gy: Tensor, wShape: readonly number[], a: ConvAttrs): Tensor {
  const [o, cg, kh, kw] = wShape as [number, number, number, number];
  const [n, c] = x.shape as [number, number];
  const [ho, wo] = spatial(gy);
  const g = a.groups;
  const kk = kh * kw;
  const l = ho * wo;
  let cols = unfold(x, [kh, kw], a);
  const gh = windowOut(x.shape[2]!, kh, a.stride[0], a.padding[0], a.padding[2], a.dilation[0]);
  const gw = windowOut(x.shape[3]!, kw, a.stride[1], a.padding[1], a.padding[3], a.dilation[1]);
  if (gh !== ho || gw !== wo) cols = cols.reshape([n, c * kk, gh, gw]).slice(2, 0, ho).slice(3, 0, wo);
  const gy4 = gy.reshape([n, g, o / g, l]);
  const cols4 = cols.reshape([n, g, cg * kk, l]);
  if (n > 1 && l < 128) {
    const folded = gy4.permute(1, 2, 0, 3).reshape([g, o / g, n * l]).matmul(cols4.permute(1, 0, 3, 2).reshape([g, n * l, cg * kk]));
    return folded.reshape([o, cg, kh, kw]);
  }
  // ONNX Runtime's GEMM (MLAS) packs its right operand, transposing it here, so the
  // smaller of gy and the columns goes on the right: a 3×3 conv's columns are 9× its
  // channels (8×64×56×56, 64→64: 13 instead of 27 ms at 1 thread).
  const colsLeft = cg * kk > o / g;
  const perSample = colsLeft ? cols4.matmul(gy4.mT) : gy4.matmul(cols4.mT);
  const summed = n === 1 ? perSample : perSample.sum(0);
  return (colsLeft ? summed.mT : summed).reshape([o, cg, kh, kw]);
}

/**
 * dL/dW of a depthwise conv (one filter per channel) is itself a depthwise
 * conv: over the N·C images x[n, c], with gy[n, c] as their filters (stride
 * and dilation trade places), summed over the samples. Both reshapes are
 * free, and ONNX Runtime runs it on its NCHWc depthwise kernel (the
 * emitter's nchwcConv). Against the column correlation it replaces (per
 * kernel row, strided slices of x and gy and a batched GEMM), forward +
 * backward of a depthwise conv at 2 threads: 8×128×56×56 3×3 52 → 29 ms
 * (1 thread 52 → 27), 5×5 68 → 39 ms, 32×768×14×14 3×3 70 → 49 ms; CeiT-T's
 * train step (batch 8) 981 → 880 ms of kernel time. Where ORT has no NCHWc
 * kernels (or N·C is not a multiple of 4) its generic grouped conv is ~1.2×
 * slower than the correlation was (8×128×56×56 3×3: 78 vs 66 ms).
 */
function depthwiseWeightGrad(x: Tensor, gy: Tensor, [kh, kw]: Pair, a: ConvAttrs): Tensor {
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [ho, wo] = spatial(gy);
  let taps = conv2d(x.reshape([1, n * c, h, w]), gy.reshape([n * c, 1, ho, wo]), undefined, {
    padding: a.padding,
    stride: a.dilation,
    dilation: a.stride,
    groups: n * c,
  });
  // Positions past the last tap are rows/columns of x no window reached (the stride's leftover).
  if (taps.shape[2]! > kh) taps = taps.slice(2, 0, kh);
  if (taps.shape[3]! > kw) taps = taps.slice(3, 0, kw);
  return (n === 1 ? taps : taps.reshape([n, c * kh * kw]).sum(0)).reshape([c, 1, kh, kw]);
}

/** The [k, k] exchange matrix: multiplying by it reverses an axis of length k. */
function reversal(k: number, dtype: DType): Tensor {
  return constOf(dtype, [k, k], Array.from({ length: k * k }, (_, i) => (i % k === k - 1 - Math.floor(i / k) ? 1 : 0)));
}

/**
 * conv_transpose2d(g, w). At stride 1 it is a conv with the taps reversed and
 * the in/out channel roles swapped, which ORT runs ~2× faster than
 * ConvTranspose (measured for dense and depthwise 3×3 and 5×5); that needs
 * the complementary padding d·(k−1) − p to be ≥ 0.
 */
function transposedConv(g: Tensor, w: Tensor, a: ConvAttrs & { outputPadding: Pair }): Tensor {
  const [cin, coutG, kh, kw] = w.shape as [number, number, number, number];
  const [dh, dw] = a.dilation;
  const [pt, pl, pb, pr] = a.padding;
  const padding = [dh * (kh - 1) - pt, dw * (kw - 1) - pl, dh * (kh - 1) - pb + a.outputPadding[0], dw * (kw - 1) - pr + a.outputPadding[1]];
  if (a.stride[0] !== 1 || a.stride[1] !== 1 || padding.some((p) => p < 0)) return convTranspose2d(g, w, undefined, a);
  let flipped = w;
  if (kh > 1) flipped = reversal(kh, w.dtype).matmul(flipped);
  if (kw > 1) flipped = flipped.matmul(reversal(kw, w.dtype));
  const gr = a.groups;
  const swapped = flipped.reshape([gr, cin / gr, coutG, kh, kw]).permute(0, 2, 1, 3, 4).reshape([gr * coutG, cin / gr, kh, kw]);
  return conv2d(g, swapped, undefined, { padding, dilation: a.dilation, groups: gr });
}

export const convRules: RuleTable<'conv2d' | 'conv_transpose2d' | 'max_pool2d' | 'max_pool2d_grad' | 'avg_pool2d' | 'unfold' | 'fold'> = {
  conv2d: ({ inputs: [x, w, b], attrs, needs }, [g]) => {
    const gy = g!;
    const k = spatial(w!);
    const outputPadding = leftover(spatial(x!), k, attrs.stride, attrs.padding, attrs.dilation);
    return [
      needs[0] ? transposedConv(gy, w!, { ...attrs, outputPadding }) : undefined,
      needs[1] ? (isDepthwise(x!.shape[1]!, w!.shape, attrs.groups) ? depthwiseWeightGrad(x!, gy, k, attrs) : convWeightGrad(x!, gy, w!.shape, attrs)) : undefined,
      b && needs[2] ? gy.sum([0, 2, 3]) : undefined,
    ];
  },
  // The conv with the roles of input and output swapped. With an outputPadding ≥ the
  // stride (possible when dilation > stride) the conv sees extra positions: crop them.
  conv_transpose2d: ({ inputs: [x, w, b], attrs, needs }, [g]) => {
    const gy = g!;
    const [h, wd] = spatial(x!);
    return [
      needs[0] ? conv2d(gy, w!, undefined, attrs).slice(2, 0, h).slice(3, 0, wd) : undefined,
      needs[1] ? convWeightGrad(gy, x!, w!.shape, attrs) : undefined,
      b && needs[2] ? gy.sum([0, 2, 3]) : undefined,
    ];
  },
  unfold: ({ inputs: [x], attrs }, [g]) => [fold(g!, spatial(x!), attrs.kernel, attrs)],
  fold: ({ attrs }, [g]) => [unfold(g!, attrs.kernel, attrs)],
  // Each output spreads its cotangent over its window: a depthwise transposed conv with a
  // constant kernel, after dividing by the per-window count when padding is not counted.
  avg_pool2d: ({ inputs: [x], attrs: { kernel, stride, padding, countIncludePad } }, [g]) => {
    const gy = g!;
    const c = x!.shape[1]!;
    const [kh, kw] = kernel;
    const size = spatial(x!);
    const opts = { stride, padding, dilation: [1, 1] as const, groups: c, outputPadding: leftover(size, kernel, stride, padding) };
    if (countIncludePad) return [transposedConv(gy, full([c, 1, kh, kw], 1 / (kh * kw), gy.dtype), opts)];
    const [ho, wo] = spatial(gy);
    const inv: number[] = [];
    for (let oh = 0; oh < ho; oh++) {
      const r = oh * stride[0] - padding[0];
      for (let ow = 0; ow < wo; ow++) {
        const q = ow * stride[1] - padding[1];
        inv.push(1 / ((Math.min(r + kh, size[0]) - Math.max(r, 0)) * (Math.min(q + kw, size[1]) - Math.max(q, 0))));
      }
    }
    return [transposedConv(gy.mul(constOf(gy.dtype, [ho, wo], inv)), full([c, 1, kh, kw], 1, gy.dtype), opts)];
  },
  // The cotangent goes to the first maximum of each window (row-major), as in PyTorch;
  // overlapping windows that chose the same element add up. One op, recomputing the maxima from x
  // (a fused kernel where the runtime has it), so the forward needs no indices: ONNX Runtime's
  // MaxPool with its Indices output took 4× as long as without (8×64×112×112, 3×3 s2: 41 vs 10 ms).
  max_pool2d: ({ inputs: [x], attrs }, [g]) => [maxPool2dGrad(x!, g!, attrs)],
  // Linear in g, whose cotangent is h read at each window's first maximum; piecewise constant in x.
  max_pool2d_grad: ({ inputs: [x, g], attrs, needs }, [h]) => {
    if (!needs[1]) return [];
    const [, indices] = emit('max_pool2d', [x!], attrs);
    return [undefined, h!.reshape([x!.size]).indexSelect(0, indices!.reshape([g!.size])).reshape([...g!.shape])];
  },
};
