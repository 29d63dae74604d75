import { type DType, NDArray, numel } from '../../../ir/ndarray.js';
import type { EmitContext } from '../model.js';
import type { EmitterTable } from './types.js';
import { attrsOf } from './types.js';

/** A constant of `shape` filled with `v`, in `dtype` (Pad's value and LayerNormalization's Scale must match the data's type). */
function filled(ctx: EmitContext, dtype: DType, shape: readonly number[], v: number): string {
  const n = numel(shape);
  const a =
    dtype === 'bool' ? new NDArray('bool', shape, new Uint8Array(n).fill(v ? 1 : 0))
    : dtype === 'int64' ? NDArray.int64(shape, new Array<number>(n).fill(v))
    : dtype === 'float64' ? NDArray.float64(shape, new Float64Array(n).fill(v))
    : NDArray.float32(shape, new Float32Array(n).fill(v));
  return ctx.constant(a, 'fill');
}

const flag = (b: boolean) => ({ int: b ? 1 : 0 });

export const nnEmitters: EmitterTable<
  'pad' | 'gather' | 'gather_elements' | 'scatter_add' | 'reduce_max' | 'softmax' | 'log_softmax' | 'layer_norm' | 'batch_norm' | 'batch_norm_train' | 'topk'
> = {
  pad: (ctx, node, [x]) => {
    const { pads, mode, value } = attrsOf(node, 'pad');
    if (mode === 'reflect') return ctx.node('Pad', [x!, ctx.ints(pads)], { mode: { str: 'reflect' } });
    return ctx.node('Pad', [x!, ctx.ints(pads), filled(ctx, node.inputs[0]!.dtype, [], value)], { mode: { str: 'constant' } });
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
    const scale = w ?? filled(ctx, xv.dtype, xv.shape.slice(axis), 1);
    return ctx.node('LayerNormalization', b ? [x!, scale, b] : [x!, scale], { axis: { int: axis }, epsilon: { float: epsilon } }, 3);
  },
  batch_norm: (ctx, node, inputs) => ctx.node('BatchNormalization', inputs, { epsilon: { float: attrsOf(node, 'batch_norm').epsilon } }),
  // Lowered by hand: BatchNormalization's training mode outputs updated running
  // statistics rather than the batch ones, and ORT's inference build refuses it.
  batch_norm_train: (ctx, node, [x, w, b]) => {
    const { epsilon } = attrsOf(node, 'batch_norm_train');
    const xv = node.inputs[0]!;
    const r = xv.shape.length;
    const c = xv.shape[1]!;
    const axes = { ints: [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2)] };
    const keep = flag(true);
    const [mean] = ctx.node('ReduceMean', [x!], { axes, keepdims: keep });
    const [centred] = ctx.node('Sub', [x!, mean!]);
    const [sq] = ctx.node('Mul', [centred!, centred!]);
    const [variance] = ctx.node('ReduceMean', [sq!], { axes, keepdims: keep });
    const [veps] = ctx.node('Add', [variance!, ctx.scalar(epsilon, xv.dtype)]);
    const [std] = ctx.node('Sqrt', [veps!]);
    const [xhat] = ctx.node('Div', [centred!, std!]);
    const perChannel = ctx.ints([c, ...new Array<number>(r - 2).fill(1)]);
    const [wc] = ctx.node('Reshape', [w!, perChannel]);
    const [bc] = ctx.node('Reshape', [b!, perChannel]);
    const [scaled] = ctx.node('Mul', [xhat!, wc!]);
    const [y] = ctx.node('Add', [scaled!, bc!]);
    const [meanOut] = ctx.node('Reshape', [mean!, ctx.ints([c])]);
    const [varOut] = ctx.node('Reshape', [variance!, ctx.ints([c])]);
    return [y!, meanOut!, varOut!];
  },
  topk: (ctx, node, [x]) => {
    const { k, axis, largest } = attrsOf(node, 'topk');
    return ctx.node('TopK', [x!, ctx.ints([k])], { axis: { int: axis }, largest: flag(largest), sorted: flag(true) }, 2);
  },
};
