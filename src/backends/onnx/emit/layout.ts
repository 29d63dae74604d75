import type { EmitterTable } from './types.js';
import { attrsOf } from './types.js';

export const layoutEmitters: EmitterTable<'matmul' | 'reshape' | 'transpose' | 'expand' | 'reduce_sum' | 'reduce_mean' | 'slice' | 'concat'> = {
  matmul: (ctx, _, inputs) => ctx.node('MatMul', inputs),
  reshape: (ctx, node, [x]) => {
    const { shape } = attrsOf(node, 'reshape');
    return ctx.node('Reshape', [x!, ctx.ints(shape)], shape.includes(0) ? { allowzero: { int: 1 } } : {});
  },
  transpose: (ctx, node, inputs) => ctx.node('Transpose', inputs, { perm: { ints: attrsOf(node, 'transpose').perm } }),
  expand: (ctx, node, [x]) => ctx.node('Expand', [x!, ctx.ints(attrsOf(node, 'expand').shape)]),
  reduce_sum: (ctx, node, [x]) => {
    const { axes, keepdims } = attrsOf(node, 'reduce_sum');
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
