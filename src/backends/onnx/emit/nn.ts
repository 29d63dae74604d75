import { RuntimeFailure } from '../../../errors.js';
import { numel } from '../../../ir/ndarray.js';
import type { EmitterTable } from './types.js';
import { MS_DOMAIN, attrsOf } from './types.js';

const flag = (b: boolean) => ({ int: b ? 1 : 0 });

export const nnEmitters: EmitterTable<
  'pad' | 'gather' | 'gather_elements' | 'scatter_add' | 'reduce_max' | 'softmax' | 'log_softmax' | 'layer_norm' | 'batch_norm' | 'batch_norm_train' | 'topk' | 'self_attention'
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
  layer_norm: (ctx, node, [x, w, b]) => {
    const { axis, epsilon } = attrsOf(node, 'layer_norm');
    const xv = node.inputs[0]!;
    // ONNX requires Scale; without a weight it is ones of the normalised shape.
    const scale = w ?? ctx.filled(xv.dtype, xv.shape.slice(axis), 1);
    // Mean and 1/std only when a backward pass reads them: writing them costs ORT's kernel about a quarter more time.
    const stats = ctx.isUsed(node.outputs[1]!) || ctx.isUsed(node.outputs[2]!);
    return ctx.node('LayerNormalization', b ? [x!, scale, b] : [x!, scale], { axis: { int: axis }, epsilon: { float: epsilon } }, stats ? 3 : 1);
  },
  batch_norm: (ctx, node, inputs) => ctx.node('BatchNormalization', inputs, { epsilon: { float: attrsOf(node, 'batch_norm').epsilon } }),
  // BatchNormalization's training mode outputs updated running statistics rather than the batch
  // ones (with momentum 0 they are the batch statistics), and ORT's kernel writes them in place into
  // its running-statistic inputs, shared constants and caller buffers included (two such nodes then
  // corrupt each other's, and an Inf left there makes every later run NaN); with a fresh input per
  // node it measured no faster here (README), so the statistics are computed here:
  // mean, x − mean, the variance as the sum of its squares (no squared tensor is written);
  // the normalisation is then ONE inference-form BatchNormalization pass with those statistics.
  batch_norm_train: (ctx, node, [x, w, b]) => {
    const { epsilon } = attrsOf(node, 'batch_norm_train');
    const xv = node.inputs[0]!;
    const r = xv.shape.length;
    const c = xv.shape[1]!;
    const n = numel(xv.shape) / c;
    const axes = { ints: [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2)] };
    const [mean] = ctx.node('ReduceMean', [x!], { axes, keepdims: flag(true) });
    const [centred] = ctx.node('Sub', [x!, mean!]);
    const [sumSq] = ctx.node('ReduceSumSquare', [centred!], { axes, keepdims: flag(false) });
    const [variance] = ctx.node('Mul', [sumSq!, ctx.scalar(1 / n, xv.dtype)]);
    const [meanC] = ctx.node('Reshape', [mean!, ctx.ints([c])]);
    const [y] = ctx.node('BatchNormalization', [x!, w!, b!, meanC!, variance!], { epsilon: { float: epsilon } });
    return [y!, meanC!, variance!, centred!];
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
