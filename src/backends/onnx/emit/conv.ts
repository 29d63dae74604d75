import { type DType, NDArray, numel } from '../../../ir/ndarray.js';
import type { Node, Value } from '../../../ir/graph.js';
import { type ConvAttrs, type WindowAttrs, isDepthwise, windowOut } from '../../../ir/ops.js';
import type { EmitContext, OnnxAttr } from '../model.js';
import { type EmitterTable, NCHWC_DOMAIN, VOLUTION_DOMAIN, attrsOf } from './types.js';

type Attrs = Readonly<Record<string, OnnxAttr>>;

function windowAttrs(kernel: readonly number[], a: { stride: readonly number[]; padding: readonly number[]; dilation?: readonly number[] }): Attrs {
  return {
    kernel_shape: { ints: kernel },
    pads: { ints: a.padding },
    strides: { ints: a.stride },
    ...(a.dilation ? { dilations: { ints: a.dilation } } : {}),
  };
}

/**
 * The im2col kernel [C·kh·kw, 1, kh, kw]: output channel c·kh·kw + i·kw + j of
 * a grouped conv (group = C) picks tap (i, j) of channel c, PyTorch's unfold order.
 */
function oneHotKernel(c: number, kh: number, kw: number, dtype: DType): NDArray {
  const kk = kh * kw;
  const k = NDArray.float64([c * kk, 1, kh, kw]);
  for (let r = 0; r < c * kk; r++) k.data[r * kk + (r % kk)] = 1;
  return dtype === 'float64' ? k : k.astype(dtype);
}

/** The leftover rows/columns a strided window leaves at the end of `size`: ConvTranspose's output_padding that restores it. */
function leftover(size: number, a: WindowAttrs, axis: 0 | 1): number {
  const k = a.kernel[axis];
  const s = a.stride[axis];
  return (size + a.padding[axis] + a.padding[axis + 2]! - a.dilation[axis] * (k - 1) - 1) % s;
}

type FilterLayout = 'depthwise' | 'dense' | 'nchw-input';

/**
 * The depthwise weight gradient's filters are gy viewed as N·C images,
 * [N·C, 1, Ho, Wo]: when C is a multiple of the block they lie in NCHWc
 * memory just as gy does, so they reuse gy's reorder, which the input
 * gradient's conv makes in the same part of the backward pass. (Its input, x
 * as [1, N·C, H, W], could likewise reuse the forward conv's reorder of x, but
 * that would keep a blocked copy of every such x alive from the forward to the
 * backward pass: UniFormer-S at batch 8, 107 MB more for another 5 ms of
 * its ~1.9 s step; gy's reuse saves 18.) Undefined for any other tensor.
 */
function blockedImages(ctx: EmitContext, v: Value, block: number): string | undefined {
  const src = v.producer?.op === 'reshape' ? v.producer.inputs[0]! : undefined;
  if (!src || src.shape.length !== 4 || v.shape.length !== 4) return undefined;
  const [n, c, h, w] = src.shape as [number, number, number, number];
  const [images, one, vh, vw] = v.shape as [number, number, number, number];
  if (c % block !== 0 || images !== n * c || one !== 1 || vh !== h || vw !== w) return undefined;
  return ctx.reshape(ctx.nchwc(ctx.name(src)), v.shape);
}

/**
 * OIHW filters in a blocked layout, the same logical shape padded to [op, ip, kh, kw]:
 * depthwise [O/B, kh, kw, Bo], which is ReorderInput's own change of layout for an image
 * of O channels (parallel, where a Transpose runs on one thread: it matters for the
 * weight gradient, whose filters are whole feature maps); dense [O/B, I/B, kh, kw, Bi, Bo];
 * for an input read as NCHW, [O/B, I, kh, kw, Bo].
 */
function blockedFilter(ctx: EmitContext, wv: Value, w: string, [o, cg, kh, kw]: readonly [number, number, number, number], [op, ip]: readonly [number, number], block: number, layout: FilterLayout): string {
  if (layout === 'depthwise') {
    const shared = blockedImages(ctx, wv, block);
    if (shared) return shared;
    const image = ctx.reshape(w, [1, o, kh, kw]);
    const [reordered] = ctx.node('ReorderInput', [image], {}, 1, NCHWC_DOMAIN);
    return ctx.reshape(reordered!, [op, 1, kh, kw]);
  }
  const [padded] = op !== o || ip !== cg ? ctx.node('Pad', [w, ctx.ints([0, 0, 0, 0, op - o, ip - cg, 0, 0])]) : [w];
  const [shape, perm] = layout === 'dense' ? [[op / block, block, ip / block, block, kh, kw], [0, 2, 4, 5, 3, 1]] : [[op / block, block, ip, kh, kw], [0, 2, 3, 4, 1]];
  const split = ctx.reshape(padded!, shape);
  const [moved] = ctx.node('Transpose', [split], { perm: { ints: perm } });
  return ctx.reshape(moved!, [op, ip, kh, kw]);
}

/**
 * A conv in ONNX Runtime's blocked layout (channels in blocks of `block`, the
 * innermost axis), for weights computed at run time: ORT's own NCHWc pass
 * rewrites only convs with constant weights, so a training graph's convs keep
 * its generic im2col + GEMM kernel, ~3–5× slower for depthwise convs, ~1.4×
 * for dense 3×3 ones and 1.1–1.4× for strided ones (measured at 8×768×14×14,
 * 8×64×56×56, and 3×3 or 7×7 at stride 2). Here the weights are reordered in
 * the graph, the activation on the way in (unless it has fewer channels than
 * a block, which the kernel reads as NCHW: an RGB stem) and out. Dense 1×1
 * and patchify (stride = kernel) convs gain nothing: they stay plain.
 */
function nchwcConv(ctx: EmitContext, node: Node, inputs: readonly string[], a: ConvAttrs, block: number): string[] | undefined {
  const [o, cg, kh, kw] = node.inputs[1]!.shape as [number, number, number, number];
  const c = node.inputs[0]!.shape[1]!;
  const depthwise = isDepthwise(c, node.inputs[1]!.shape, a.groups);
  const dense = a.groups === 1 && kh * kw > 1 && !(a.stride[0] === kh && a.stride[1] === kw);
  const nchwInput = dense && c < block;
  // ReorderInput needs channels in fours; it pads them up to the block itself.
  if (!(depthwise || dense) || (c % 4 !== 0 && !nchwInput) || o % 4 !== 0) return undefined;
  const up = (n: number) => Math.ceil(n / block) * block;
  const [op, ip] = [up(o), depthwise ? 1 : nchwInput ? cg : up(cg)];
  let b = inputs[2];
  if (b !== undefined && op !== o) [b] = ctx.node('Pad', [b, ctx.ints([0, op - o])]);
  const filter = blockedFilter(ctx, node.inputs[1]!, inputs[1]!, [o, cg, kh, kw], [op, ip], block, depthwise ? 'depthwise' : nchwInput ? 'nchw-input' : 'dense');
  const x = nchwInput ? inputs[0]! : ctx.nchwc(inputs[0]!);
  const attrs = { ...windowAttrs([kh, kw], a), group: { int: depthwise ? op : 1 } };
  const [y] = ctx.node('Conv', [x!, filter, ...(b === undefined ? [] : [b])], attrs, 1, NCHWC_DOMAIN);
  return ctx.node('ReorderOutput', [y!], { channels: { int: o } }, 1, NCHWC_DOMAIN);
}

export const convEmitters: EmitterTable<'conv2d' | 'conv_transpose2d' | 'max_pool2d' | 'max_pool2d_grad' | 'avg_pool2d' | 'unfold' | 'fold'> = {
  conv2d: (ctx, node, inputs) => {
    const a = attrsOf(node, 'conv2d');
    const blocked = ctx.nchwcBlock && !ctx.isStatic(node.inputs[1]!) ? nchwcConv(ctx, node, inputs, a, ctx.nchwcBlock) : undefined;
    return blocked ?? ctx.node('Conv', inputs, { ...windowAttrs(node.inputs[1]!.shape.slice(2), a), group: { int: a.groups } });
  },
  // Explicit pads and output_padding (no auto_pad, no output_shape): ORT then computes exactly the
  // inferred size. ORT rejects output_padding ≥ stride (allowed up to the dilation, as in PyTorch);
  // only the begin pads place the output, so the excess comes off the end pads instead, and what
  // they cannot absorb is zero-padded afterwards, with the bias added after that to cover it.
  conv_transpose2d: (ctx, node, inputs) => {
    const a = attrsOf(node, 'conv_transpose2d');
    const outPad = [0, 1].map((i) => Math.min(a.outputPadding[i]!, a.stride[i]! - 1));
    const endPad = [0, 1].map((i) => a.padding[i + 2]! - a.outputPadding[i]! + outPad[i]!);
    const attrs = {
      ...windowAttrs(node.inputs[1]!.shape.slice(2), { ...a, padding: [a.padding[0], a.padding[1], Math.max(endPad[0]!, 0), Math.max(endPad[1]!, 0)] }),
      group: { int: a.groups },
      output_padding: { ints: outPad },
    };
    if (endPad.every((p) => p >= 0)) return ctx.node('ConvTranspose', inputs, attrs);
    const [y] = ctx.node('ConvTranspose', inputs.slice(0, 2), attrs);
    const [padded] = ctx.node('Pad', [y!, ctx.ints([0, 0, 0, 0, 0, 0, Math.max(-endPad[0]!, 0), Math.max(-endPad[1]!, 0)])]);
    if (inputs.length < 3) return [padded!];
    const bias = ctx.reshape(inputs[2]!, [-1, 1, 1]);
    return ctx.node('Add', [padded!, bias]);
  },
  // The Indices output (flat into the whole input, first maximum in row-major window order:
  // ORT compares with a strict >) only when something reads it (the backward pass): with it,
  // ORT leaves its MLAS pooling kernel for a scalar loop (measured at 8×64×112×112, 3×3 s2:
  // ~3 ms without, ~30 ms with; still well under the unfold/fold backward it replaces).
  max_pool2d: (ctx, node, inputs) => {
    const a = attrsOf(node, 'max_pool2d');
    return ctx.node('MaxPool', inputs, windowAttrs(a.kernel, a), ctx.isUsed(node.outputs[1]!) ? 2 : 1);
  },
  // volution's MaxPool2dGrad where the session has it (one task per channel plane, the maxima found
  // again in x); otherwise MaxPool's Indices output and a ScatterElements adding g there.
  max_pool2d_grad: (ctx, node, [x, g]) => {
    const a = attrsOf(node, 'max_pool2d_grad');
    const { shape } = node.inputs[0]!;
    if (ctx.fusedKernel(node)) return ctx.node('MaxPool2dGrad', [g!, x!, ctx.ints([...a.kernel, ...a.stride, ...a.padding])], {}, 1, VOLUTION_DOMAIN);
    const [, indices] = ctx.node('MaxPool', [x!], windowAttrs(a.kernel, a), 2);
    const flat = (t: string) => ctx.reshape(t, [-1]);
    const [dx] = ctx.node('ScatterElements', [ctx.filled(node.inputs[0]!.dtype, [numel(shape)], 0), flat(indices!), flat(g!)], { axis: { int: 0 }, reduction: { str: 'add' } });
    return [ctx.reshape(dx!, shape)];
  },
  avg_pool2d: (ctx, node, inputs) => {
    const a = attrsOf(node, 'avg_pool2d');
    return ctx.node('AveragePool', inputs, { ...windowAttrs(a.kernel, a), count_include_pad: { int: a.countIncludePad ? 1 : 0 } });
  },
  unfold: (ctx, node, [x]) => {
    const a = attrsOf(node, 'unfold');
    const { dtype, shape } = node.inputs[0]!;
    const k = ctx.constant(oneHotKernel(shape[1]!, a.kernel[0], a.kernel[1], dtype), 'im2col');
    const [cols] = ctx.node('Conv', [x!, k], { ...windowAttrs(a.kernel, a), group: { int: shape[1]! } });
    return [ctx.reshape(cols!, node.outputs[0]!.shape)];
  },
  // col2im as the transposed im2col conv; output_padding recovers rows/columns no window reaches.
  fold: (ctx, node, [x]) => {
    const a = attrsOf(node, 'fold');
    const { dtype, shape: [n, ckk] } = node.inputs[0]!;
    const c = node.outputs[0]!.shape[1]!;
    const [h, w] = a.outputSize;
    const ho = windowOut(h, a.kernel[0], a.stride[0], a.padding[0], a.padding[2], a.dilation[0]);
    const wo = windowOut(w, a.kernel[1], a.stride[1], a.padding[1], a.padding[3], a.dilation[1]);
    const grid = ctx.reshape(x!, [n!, ckk!, ho, wo]);
    const k = ctx.constant(oneHotKernel(c, a.kernel[0], a.kernel[1], dtype), 'im2col');
    return ctx.node('ConvTranspose', [grid, k], {
      ...windowAttrs(a.kernel, a),
      group: { int: c },
      output_padding: { ints: [leftover(h, a, 0), leftover(w, a, 1)] },
    });
  },
};
