import { RuntimeFailure } from '../../../errors.js';
import { type DType, numel } from '../../../ir/ndarray.js';
import { normAxis } from '../../../ir/ops.js';
import type { EmitContext } from '../model.js';
import type { EmitterTable } from './types.js';
import { MS_DOMAIN, VOLUTION_DOMAIN, attrsOf } from './types.js';

const flag = (b: boolean) => ({ int: b ? 1 : 0 });
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
/** A layer norm's weight or bias as the kernels take it: one vector over the normalised axes (filled with `fill` where absent). */
const featureVector = (ctx: EmitContext, t: string | undefined, normShape: readonly number[], dtype: DType, fill: number) =>
  t ? (normShape.length === 1 ? t : ctx.reshape(t, [numel(normShape)])) : ctx.filled(dtype, [numel(normShape)], fill);
/** The axes a batch norm reduces over: all of [N, C, ...] but the channels. */
const channelStatAxes = (rank: number) => [0, ...range(2, rank)];

export const nnEmitters: EmitterTable<
  'pad' | 'gather' | 'gather_elements' | 'scatter_add' | 'reduce_max' | 'softmax' | 'log_softmax' | 'layer_norm' | 'layer_norm_grad' | 'batch_norm' | 'batch_norm_train' | 'batch_norm_train_grad' | 'topk' | 'self_attention'
> = {
  pad: (ctx, node, [x]) => {
    const { pads, mode, value } = attrsOf(node, 'pad');
    if (mode === 'reflect') return ctx.node('Pad', [x!, ctx.ints(pads)], { mode: { str: 'reflect' } });
    return ctx.node('Pad', [x!, ctx.ints(pads), ctx.filled(node.inputs[0]!.dtype, [], value)], { mode: { str: 'constant' } });
  },
  gather: (ctx, node, inputs) => ctx.node('Gather', inputs, { axis: { int: attrsOf(node, 'gather').axis } }),
  gather_elements: (ctx, node, inputs) => ctx.node('GatherElements', inputs, { axis: { int: attrsOf(node, 'gather_elements').axis } }),
  scatter_add: (ctx, node, inputs) => ctx.node('ScatterElements', inputs, { axis: { int: attrsOf(node, 'scatter_add').axis }, reduction: { str: 'add' } }),
  reduce_max: (ctx, node, inputs) => {
    const { axes, keepdims } = attrsOf(node, 'reduce_max');
    return ctx.node('ReduceMax', inputs, { axes: { ints: axes }, keepdims: flag(keepdims) });
  },
  softmax: (ctx, node, inputs) => ctx.node('Softmax', inputs, { axis: { int: attrsOf(node, 'softmax').axis } }),
  log_softmax: (ctx, node, inputs) => ctx.node('LogSoftmax', inputs, { axis: { int: attrsOf(node, 'log_softmax').axis } }),
  // volution's LayerNorm kernel where the session has it (over the [rows, features] view; its
  // statistics are cheap to write); otherwise ONNX Runtime's LayerNormalization.
  layer_norm: (ctx, node, [x, w, b]) => {
    const { axis, epsilon } = attrsOf(node, 'layer_norm');
    const [xv, , mean, rstd] = [node.inputs[0]!, ...node.outputs] as const;
    const { dtype, shape } = xv;
    const ax = normAxis(axis, shape.length);
    const normShape = shape.slice(ax);
    // Mean and 1/std only when a backward pass reads them: writing them costs ORT's kernel about a quarter more time.
    const stats = ctx.isUsed(mean) || ctx.isUsed(rstd);
    if (ctx.fusedKernel(node)) {
      // Several normalised axes: a view of rows (any batch), and back to x's own shape at run time.
      const several = ax < shape.length - 1;
      const flat = several ? ctx.reshape(x!, [-1, numel(normShape)]) : x!;
      const params = [featureVector(ctx, w, normShape, dtype, 1), featureVector(ctx, b, normShape, dtype, 0)];
      const [y, m, r] = ctx.node('LayerNorm', [flat, ...params, ctx.scalar(epsilon, dtype)], {}, 3, VOLUTION_DOMAIN);
      const out = several ? ctx.node('Reshape', [y!, ctx.node('Shape', [x!])[0]!])[0]! : y!;
      // The kernel's statistics are one per row; a backward pass (fixed shapes) reads them in x's rank.
      const statShape = shape.map((d, i) => (i < ax ? d : 1));
      return stats ? [out, ctx.reshape(m!, statShape), ctx.reshape(r!, statShape)] : [out];
    }
    // ONNX requires Scale; without a weight it is ones of the normalised shape.
    const scale = w ?? ctx.filled(dtype, normShape, 1);
    return ctx.node('LayerNormalization', b ? [x!, scale, b] : [x!, scale], { axis: { int: axis }, epsilon: { float: epsilon } }, stats ? 3 : 1);
  },
  // One LayerNormGrad pass (over the [rows, features] view) where the session has volution's
  // kernels. Otherwise six full-size writes, with x̂ = (x − μ)·r, v = g·w:
  //   x̂, and r·v − r·mean(v), as one per-row affine map each: BatchNormalization over the
  //   [1, rows, features] view, the rows as channels (see autodiff's channelAffine);
  //   mean(v·x̂) as a MatMul of g·x̂ (dw's summand too) with w, not another full-size product.
  layer_norm_grad: (ctx, node, [x, g, mean, rstd, w]) => {
    const [xv, gx, gw, gb] = [node.inputs[0]!, ...node.outputs] as const;
    const { dtype, shape } = xv;
    const ax = normAxis(attrsOf(node, 'layer_norm_grad').axis, shape.length);
    const rows = numel(shape.slice(0, ax));
    const features = numel(shape.slice(ax));
    const normShape = shape.slice(ax);
    if (ctx.fusedKernel(node)) {
      const flat = ax === shape.length - 1 ? (t: string) => t : (t: string) => ctx.reshape(t, [rows, features]);
      const outs = ctx.node('LayerNormGrad', [flat(g!), flat(x!), mean!, rstd!, featureVector(ctx, w, normShape, dtype, 1)], {}, 3, VOLUTION_DOMAIN);
      return ax === shape.length - 1 ? outs : [ctx.reshape(outs[0]!, shape), ctx.reshape(outs[1]!, normShape), ctx.reshape(outs[2]!, normShape)];
    }
    const outs: string[] = [];
    if (ctx.isUsed(gb)) outs[2] = ax === 0 ? g! : ctx.node('ReduceSum', [g!, ctx.ints(range(0, ax))], { keepdims: flag(false) })[0]!;
    if (!ctx.isUsed(gx) && !ctx.isUsed(gw)) return outs;
    const view = (t: string) => ctx.reshape(t, [1, rows, features]);
    const zeros = ctx.filled(dtype, [rows], 0);
    const perRow = (t: string, scale: string, shift: string) => ctx.node('BatchNormalization', [t, scale, shift, zeros, zeros], { epsilon: { float: 1 } })[0]!;
    const r = ctx.reshape(rstd!, [rows]);
    const [mr] = ctx.node('Mul', [ctx.reshape(mean!, [rows]), r]);
    const xhat = perRow(view(x!), r, ctx.node('Neg', [mr!])[0]!);
    const g3 = view(g!);
    const [gxhat] = ctx.node('Mul', [g3, xhat]);
    if (ctx.isUsed(gw)) outs[1] = ctx.reshape(ctx.node('ReduceSum', [gxhat!, ctx.ints([0, 1])], { keepdims: flag(false) })[0]!, normShape);
    if (!ctx.isUsed(gx)) return outs;
    const v = w ? ctx.node('Mul', [g3, ctx.reshape(w, [features])])[0]! : g3;
    const lastAxis = { axes: { ints: [-1] }, keepdims: flag(false) };
    const [m1] = ctx.node('ReduceMean', [v], lastAxis);
    const [m2] = w
      ? ctx.node('Div', [ctx.node('MatMul', [gxhat!, ctx.reshape(w, [features, 1])])[0]!, ctx.scalar(features, dtype)])
      : ctx.node('ReduceMean', [gxhat!], lastAxis);
    const [m1r] = ctx.node('Mul', [ctx.reshape(m1!, [rows]), r]);
    const [m2r] = ctx.node('Mul', [ctx.reshape(m2!, [rows]), r]);
    const [projected] = ctx.node('Mul', [xhat, ctx.reshape(m2r!, [1, rows, 1])]);
    const [diff] = ctx.node('Sub', [perRow(v, r, ctx.node('Neg', [m1r!])[0]!), projected!]);
    outs[0] = ctx.reshape(diff!, shape);
    return outs;
  },
  batch_norm: (ctx, node, inputs) => ctx.node('BatchNormalization', inputs, { epsilon: { float: attrsOf(node, 'batch_norm').epsilon } }),
  // volution's BatchNormTrain kernel where the session has it (each channel read from memory once).
  // Otherwise: BatchNormalization's training mode outputs updated running statistics rather than the
  // batch ones (with momentum 0 they are the batch statistics), and ORT's kernel writes them in place
  // into its running-statistic inputs, shared constants and caller buffers included (two such nodes then
  // corrupt each other's, and an Inf left there makes every later run NaN); with a fresh input per
  // node it measured no faster here (README), so the statistics are computed here:
  // mean, x − mean, the variance as the sum of its squares (no squared tensor is written);
  // the normalisation is then ONE inference-form BatchNormalization pass with those statistics.
  batch_norm_train: (ctx, node, [x, w, b]) => {
    const { epsilon } = attrsOf(node, 'batch_norm_train');
    const xv = node.inputs[0]!;
    if (ctx.fusedKernel(node)) return ctx.node('BatchNormTrain', [x!, w!, b!, ctx.scalar(epsilon, xv.dtype)], {}, 3, VOLUTION_DOMAIN);
    const c = xv.shape[1]!;
    const n = numel(xv.shape) / c;
    const axes = { ints: channelStatAxes(xv.shape.length) };
    const [mean] = ctx.node('ReduceMean', [x!], { axes, keepdims: flag(true) });
    const [centred] = ctx.node('Sub', [x!, mean!]);
    const [sumSq] = ctx.node('ReduceSumSquare', [centred!], { axes, keepdims: flag(false) });
    const [variance] = ctx.node('Mul', [sumSq!, ctx.scalar(1 / n, xv.dtype)]);
    const meanC = ctx.reshape(mean!, [c]);
    const [y] = ctx.node('BatchNormalization', [x!, w!, b!, meanC, variance!], { epsilon: { float: epsilon } });
    return [y!, meanC, variance!];
  },
  // One BatchNormTrainGrad kernel where the session has it. Otherwise, with per-channel S1 = Σ g and
  // S2 = Σ g·(x − μ), r = 1/√(σ² + ε): gx = w·r·g + k2·(x − μ) + k3 with k2 = −w·r³·S2/n and
  // k3 = −w·r·S1/n, the last two terms one per-channel affine pass (BatchNormalization, zero statistics).
  batch_norm_train_grad: (ctx, node, [x, g, mean, variance, w]) => {
    const { epsilon } = attrsOf(node, 'batch_norm_train_grad');
    const [xv, gx, gw, gb] = [node.inputs[0]!, ...node.outputs] as const;
    const { dtype, shape } = xv;
    const c = shape[1]!;
    const n = numel(shape) / c;
    const [r] = ctx.node('Reciprocal', [ctx.node('Sqrt', [ctx.node('Add', [variance!, ctx.scalar(epsilon, dtype)])[0]!])[0]!]);
    const weight = w ?? ctx.filled(dtype, [c], 1);
    if (ctx.fusedKernel(node)) return ctx.node('BatchNormTrainGrad', [g!, x!, mean!, r!, weight], {}, 3, VOLUTION_DOMAIN);
    const sum = (t: string) => ctx.node('ReduceSum', [t, ctx.ints(channelStatAxes(shape.length))], { keepdims: flag(false) })[0]!;
    const perChannel = (t: string) => ctx.reshape(t, [c, ...new Array<number>(shape.length - 2).fill(1)]);
    const outs: string[] = [];
    const s1 = sum(g!);
    if (ctx.isUsed(gb)) outs[2] = s1;
    if (!ctx.isUsed(gx) && !ctx.isUsed(gw)) return outs;
    const [centred] = ctx.node('Sub', [x!, perChannel(mean!)]);
    const s2 = sum(ctx.node('Mul', [g!, centred!])[0]!);
    if (ctx.isUsed(gw)) outs[1] = ctx.node('Mul', [s2, r!])[0]!;
    if (!ctx.isUsed(gx)) return outs;
    const [wr] = ctx.node('Mul', [weight, r!]);
    const [k2] = ctx.node('Mul', [ctx.node('Mul', [wr!, ctx.node('Mul', [r!, r!])[0]!])[0]!, ctx.node('Mul', [s2, ctx.scalar(-1 / n, dtype)])[0]!]);
    const [k3] = ctx.node('Mul', [wr!, ctx.node('Mul', [s1, ctx.scalar(-1 / n, dtype)])[0]!]);
    const zeros = ctx.filled(dtype, [c], 0);
    const [affine] = ctx.node('BatchNormalization', [centred!, k2!, k3!, zeros, zeros], { epsilon: { float: 1 } });
    outs[0] = ctx.node('Add', [ctx.node('Mul', [g!, perChannel(wr!)])[0]!, affine!])[0]!;
    return outs;
  },
  topk: (ctx, node, [x]) => {
    const { k, axis, largest } = attrsOf(node, 'topk');
    return ctx.node('TopK', [x!, ctx.ints([k])], { axis: { int: axis }, largest: flag(largest), sorted: flag(true) }, 2);
  },
  self_attention: (ctx, node, inputs) => {
    // Made only for in-process graphs (`fuseAttention`), where contrib ops are allowed.
    if (!ctx.contribOps) throw new RuntimeFailure('self_attention is ONNX Runtime\'s contrib Attention op: emit with contribOps');
    const { heads, scale } = attrsOf(node, 'self_attention');
    return ctx.node('Attention', inputs, { num_heads: { int: heads }, scale: { float: scale } }, 1, MS_DOMAIN);
  },
};
