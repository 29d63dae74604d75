import type { Value } from '../../ir/graph.js';
import { type Tensor, wrap } from '../../tensor/tensor.js';
import type { RuleTable } from './types.js';
import { unbroadcast } from './util.js';

/**
 * Whether b is one matrix shared by every batch of a (a Linear weight applied
 * to [B, N, C] activations). Its batch dims are all 1, so the output's rows
 * are a's rows, in order.
 */
function sharedWeight(a: Tensor, b: Tensor): boolean {
  return a.rank > 2 && b.rank >= 2 && b.shape.slice(0, -2).every((d) => d === 1);
}

/**
 * The gradient of a shared matrix as ONE matmul whose contraction runs over
 * the batch too ([B·M, K]ᵀ·[B·M, N]), rather than B small matmuls summed
 * afterwards: one large GEMM runs near peak, and no [B, K, N] stack is written.
 */
function foldedWeightGrad(a: Tensor, b: Tensor, g: Tensor): Tensor {
  const k = a.shape.at(-1)!;
  const n = g.shape.at(-1)!;
  return a.reshape([-1, k]).mT.matmul(g.reshape([-1, n])).reshape([...b.shape]);
}

/** Whether `perm` swaps the last two axes and keeps the rest. */
function swapsLastTwo(perm: readonly number[]): boolean {
  const r = perm.length;
  return r >= 2 && perm.every((p, i) => p === (i < r - 2 ? i : 2 * r - 3 - i));
}

/** `v` with its last two axes swapped: the source of `v` when `v` is itself that swap. */
function swapLast(v: Value): Tensor {
  const p = v.producer;
  return p?.op === 'transpose' && swapsLastTwo(p.attrs.perm as readonly number[]) ? wrap(p.inputs[0]!) : wrap(v).mT;
}

export const layoutRules: RuleTable<'matmul' | 'reshape' | 'transpose' | 'expand' | 'reduce_sum' | 'reduce_mean' | 'slice' | 'concat'> = {
  matmul: ({ inputs: [a, b], needs }, [g]) => [
    needs[0] ? unbroadcast(g!.matmul(b!.mT), a!.shape) : undefined,
    needs[1] ? (sharedWeight(a!, b!) ? foldedWeightGrad(a!, b!, g!) : unbroadcast(a!.mT.matmul(g!), b!.shape)) : undefined,
  ],
  reshape: ({ inputs: [x] }, [g]) => [g!.reshape([...x!.shape])],
  transpose: ({ attrs: { perm } }, [g]) => {
    // The cotangent of a swap of the last two axes (attention's k.mT) is a matrix product A·B:
    // build its transpose as Bᵀ·Aᵀ, whose transposes ONNX Runtime folds into the product's flags,
    // where transposing the product's result is a pass of its own.
    const product = g!.value.producer;
    if (swapsLastTwo(perm) && product?.op === 'matmul') return [swapLast(product.inputs[1]!).matmul(swapLast(product.inputs[0]!))];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [g!.permute(...inv)];
  },
  expand: ({ inputs: [x] }, [g]) => [unbroadcast(g!, x!.shape)],
  reduce_sum: ({ inputs: [x], attrs: { axes, keepdims } }, [g]) => [keepDims(g!, x!.shape, axes, keepdims).expand([...x!.shape])],
  reduce_mean: ({ inputs: [x], attrs: { axes, keepdims } }, [g]) => {
    const n = axes.reduce((a, i) => a * x!.shape[i]!, 1);
    return [keepDims(g!, x!.shape, axes, keepdims).div(n).expand([...x!.shape])];
  },
  // The cotangent of a strided slice: g interleaved with zeros (step > 1), then zero-padded to the input.
  slice: ({ inputs: [x], attrs: { starts, ends, axes, steps } }, [g]) => {
    let y = g!;
    axes.forEach((ax, i) => {
      const step = steps[i]!;
      const d = x!.shape[ax]!;
      const m = y.shape[ax]!;
      if (step > 1) {
        const sh = [...y.shape];
        const spread = y.unsqueeze(ax + 1).pad(padAt(y.rank + 1, ax + 1, 0, step - 1));
        sh[ax] = m * step;
        y = spread.reshape(sh).slice(ax, 0, Math.min(m * step, ends[i]! - starts[i]!));
      }
      const before = starts[i]!;
      y = y.pad(padAt(y.rank, ax, before, d - before - y.shape[ax]!));
    });
    return [y];
  },
  concat: ({ inputs, attrs: { axis }, needs }, [g]) => {
    let at = 0;
    return inputs.map((x, i) => {
      const n = x.shape[axis]!;
      const piece = needs[i] ? g!.slice(axis, at, at + n) : undefined;
      at += n;
      return piece;
    });
  },
};

/** Re-inserts reduced axes as size 1 so the cotangent broadcasts back. */
function keepDims(g: Tensor, shape: readonly number[], axes: readonly number[], keepdims: boolean) {
  if (keepdims) return g;
  return g.reshape(shape.map((d, i) => (axes.includes(i) ? 1 : d)));
}

/** A torch-order pad list that pads only `axis` of a rank-`rank` tensor. */
function padAt(rank: number, axis: number, before: number, after: number): number[] {
  const pads = new Array<number>(2 * (rank - axis)).fill(0);
  pads[2 * (rank - 1 - axis)] = before;
  pads[2 * (rank - 1 - axis) + 1] = after;
  return pads;
}

