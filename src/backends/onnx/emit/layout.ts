import type { Node, Value } from '../../../ir/graph.js';
import { numel, sameShape } from '../../../ir/ndarray.js';
import { isTranspose } from '../../passes/rewrite.js';
import type { EmitContext } from '../model.js';
import type { EmitterTable } from './types.js';
import { attrsOf } from './types.js';

/**
 * The tensor a `reshape` node's Reshape reads. ONNX Runtime's transpose optimizer pushes a Transpose down through a
 * Reshape that splits axes and then merges it with the next Transpose: NCHW → NHWC → [B, nh, ws, nw, ws, C] →
 * windows turns into one 6-D Transpose that moves single floats, many times slower than the two it replaces, which
 * each move contiguous runs (8×48×14×14: 0.29 vs 0.015 ms). A Flatten in between, which costs no copy, is a node it
 * does not push through; it goes where a transpose that moves the last axis feeds a reshape that splits axes.
 */
export function reshapeSource(ctx: EmitContext, node: Node, x: string): string {
  const input = node.inputs[0]!;
  const from = input.producer;
  if (from?.op !== 'transpose' || node.outputs[0]!.shape.length <= input.shape.length) return x;
  const { perm } = attrsOf(from, 'transpose');
  return perm[perm.length - 1] === perm.length - 1 ? x : ctx.node('Flatten', [x], { axis: { int: 1 } })[0]!;
}

/**
 * The same transpose with its size-1 axes left in place: the input viewed (a free Reshape) with them where the output
 * has them, and the order of the others. Size-1 axes place no data, yet ONNX Runtime's Transpose leaves its fast path
 * for a batch of 2-D transposes when one of them changes places with a larger axis: [32, 1, 192, 49] by [1, 0, 3, 2]
 * (the folded-batch weight gradient of MixFormer's 1×1 convs) took 1.2 ms where [1, 32, 192, 49] by [0, 1, 3, 2]
 * takes 0.13–0.23, and UniFormer-S's [8, 1, 1280, 49] 1.9–2.1 ms against 0.18–0.34. Settled transposes of other
 * shapes measured both faster and slower ([32, 49, 1, 12, 4] by [2, 0, 3, 1, 4]: 0.10 ms, settled 0.30), so a
 * transpose is settled only where it becomes a swap of the last two axes, or no transpose at all (it moved only
 * size-1 axes: a Reshape).
 */
export function settledTranspose(shape: readonly number[], perm: readonly number[]): { view: number[]; perm: number[] } | undefined {
  const unit = perm.map((a) => shape[a] === 1); // by output position
  const sized = [...shape.keys()].filter((a) => shape[a] !== 1); // the other input axes, in their order
  const slots = [...perm.keys()].filter((j) => !unit[j]); // the output positions they take, in order
  const view = perm.map(() => 1);
  sized.forEach((a, i) => (view[slots[i]!] = shape[a]!));
  const slotOf = new Map(sized.map((a, i) => [a, slots[i]!]));
  const settled = perm.map((a, j) => (unit[j] ? j : slotOf.get(a)!));
  const r = perm.length;
  const lastTwo = sameShape(settled, [...Array(Math.max(r - 2, 0)).keys(), r - 1, r - 2]);
  const unchanged = sameShape(settled, perm) && sameShape(view, shape);
  return !unchanged && (lastTwo || isIdentity(settled)) ? { view, perm: settled } : undefined;
}

function isIdentity(perm: readonly number[]): boolean {
  return perm.every((a, j) => a === j);
}

export const layoutEmitters: EmitterTable<'matmul' | 'reshape' | 'transpose' | 'expand' | 'reduce_sum' | 'reduce_mean' | 'slice' | 'concat'> = {
  // A batched A that is its last two axes transposed, times an unbatched B (a Linear's input gradient when the
  // cotangent arrives channels-first from a feature map): ONNX Runtime folds the Transpose into the MatMul (transA)
  // and then runs one small GEMM per batch, where untransposed it runs one GEMM over all rows. A Reshape to 2-D in
  // between keeps them apart (sizes of UniFormer-S's MLP, 1 thread: 8 × [196×320]ᵀ·[320×1280] 15.6 → 12.4 ms, the
  // Transpose's 0.35 ms included; 8 × [49×512]ᵀ·[512×2048] 12.3 → 7.1). The result's Reshape bakes in the sizes.
  matmul: (ctx, node, inputs) => {
    const [a, b] = node.inputs as [Value, Value];
    const r = a.shape.length;
    const swapsLastTwo = r >= 3 && isTranspose(a.producer, ...[...Array(r - 2).keys()], r - 1, r - 2);
    if (!ctx.fixedShapes || b.shape.length !== 2 || !swapsLastTwo || numel(a.shape.slice(0, -2)) === 1) return ctx.node('MatMul', inputs);
    const rows = ctx.reshape(inputs[0]!, [-1, b.shape[0]!]);
    const [product] = ctx.node('MatMul', [rows, inputs[1]!]);
    return [ctx.reshape(product!, node.outputs[0]!.shape)];
  },
  reshape: (ctx, node, [x]) => {
    const { shape } = attrsOf(node, 'reshape');
    return ctx.node('Reshape', [reshapeSource(ctx, node, x!), ctx.ints(shape)], shape.includes(0) ? { allowzero: { int: 1 } } : {});
  },
  transpose: (ctx, node, [x]) => {
    const { perm } = attrsOf(node, 'transpose');
    const settled = ctx.fixedShapes ? settledTranspose(node.inputs[0]!.shape, perm) : undefined;
    if (!settled) return ctx.node('Transpose', [x!], { perm: { ints: perm } });
    if (isIdentity(settled.perm)) return [ctx.reshape(x!, node.outputs[0]!.shape)];
    const view = ctx.reshape(x!, settled.view);
    return ctx.node('Transpose', [view], { perm: { ints: settled.perm } });
  },
  expand: (ctx, node, [x]) => ctx.node('Expand', [x!, ctx.ints(attrsOf(node, 'expand').shape)]),
  // A sum over leading axes (a bias or norm-weight gradient: [rows, C] → [C]) is ones[1, rows] @ x[rows, C]: ONNX
  // Runtime's ReduceSum takes 2–6× as long on these shapes at 2 threads (slower than at 1: 25088×24, 0.80 vs 0.22 ms)
  // and 1.2–2× at 1 thread. Sums that keep a middle axis (BatchNorm's over N, H, W) stay ReduceSums, which are faster
  // there. The row count is baked into the ones, so only graphs with fixed shapes get it.
  reduce_sum: (ctx, node, [x]) => {
    const { axes, keepdims } = attrsOf(node, 'reduce_sum');
    const { shape, dtype } = node.inputs[0]!;
    const lead = [...axes].map((a) => (a < 0 ? a + shape.length : a)).sort((a, b) => a - b);
    if (ctx.fixedShapes && dtype === 'float32' && lead.length < shape.length && lead.every((a, i) => a === i)) {
      const rows = shape.slice(0, lead.length).reduce((a, b) => a * b, 1);
      const flat = ctx.reshape(x!, [rows, -1]);
      const [sum] = ctx.node('MatMul', [ctx.filled('float32', [1, rows], 1), flat]);
      return [ctx.reshape(sum!, node.outputs[0]!.shape)];
    }
    return ctx.node('ReduceSum', [x!, ctx.ints(axes)], { keepdims: { int: keepdims ? 1 : 0 } });
  },
  reduce_mean: (ctx, node, inputs) => {
    const { axes, keepdims } = attrsOf(node, 'reduce_mean');
    return ctx.node('ReduceMean', inputs, { axes: { ints: axes }, keepdims: { int: keepdims ? 1 : 0 } });
  },
  slice: (ctx, node, [x]) => {
    const { starts, ends, axes, steps } = attrsOf(node, 'slice');
    return ctx.node('Slice', [x!, ctx.ints(starts), ctx.ints(ends), ctx.ints(axes), ctx.ints(steps)]);
  },
  concat: (ctx, node, inputs) => ctx.node('Concat', inputs, { axis: { int: attrsOf(node, 'concat').axis } }),
};
