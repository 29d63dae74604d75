import { numel, stridesOf } from '../../../ir/ndarray.js';
import type { KernelTable } from '../types.js';
import { forEachBroadcast, forEachStrided, permute, ref } from './util.js';

export const layoutKernels: KernelTable<'matmul' | 'reshape' | 'transpose' | 'expand' | 'reduce_sum' | 'reduce_mean' | 'slice' | 'concat'> = {
  matmul: ([a, b], _, [out]) => {
    const [m, k] = a!.shape.slice(-2) as [number, number];
    const n = b!.shape[b!.shape.length - 1]!;
    const batchShape = out!.shape.slice(0, -2);
    const y = ref(out!.shape);
    const aBatch = a!.shape.slice(0, -2);
    const bBatch = b!.shape.slice(0, -2);
    let bi = 0;
    forEachBroadcast(batchShape, [aBatch, bBatch], (_, [oa, ob]) => {
      const ao = oa! * m * k;
      const bo = ob! * k * n;
      const yo = bi++ * m * n;
      for (let i = 0; i < m; i++) {
        for (let p = 0; p < k; p++) {
          const av = a!.data[ao + i * k + p]!;
          if (av === 0) continue;
          for (let j = 0; j < n; j++) y.data[yo + i * n + j]! += av * b!.data[bo + p * n + j]!;
        }
      }
    });
    return [y];
  },
  reshape: ([x], { shape }) => [ref(shape, x!.data)],
  transpose: ([x], { perm }) => [permute(x!, perm)],
  expand: ([x], _, [out]) => {
    const y = ref(out!.shape);
    forEachBroadcast(out!.shape, [x!.shape], (i, [o]) => (y.data[i] = x!.data[o!]!));
    return [y];
  },
  reduce_sum: ([x], { axes }, [out]) => [reduceSum(x!.shape, x!.data, axes, out!.shape, 1)],
  reduce_mean: ([x], { axes }, [out]) => {
    const n = axes.reduce((a, i) => a * x!.shape[i]!, 1);
    return [reduceSum(x!.shape, x!.data, axes, out!.shape, 1 / n)];
  },
  slice: ([x], { starts, axes, steps }, [out]) => {
    const s = stridesOf(x!.shape);
    const strides = [...s];
    let base = 0;
    axes.forEach((ax, i) => {
      base += starts[i]! * s[ax]!;
      strides[ax] = s[ax]! * steps[i]!;
    });
    const y = ref(out!.shape);
    forEachStrided(out!.shape, strides, (i, off) => (y.data[i] = x!.data[off]!), base);
    return [y];
  },
  concat: (inputs, { axis }, [out]) => {
    const y = ref(out!.shape);
    const outer = numel(out!.shape.slice(0, axis));
    const inner = numel(out!.shape.slice(axis + 1));
    const total = out!.shape[axis]! * inner;
    let at = 0;
    for (const x of inputs) {
      const len = x.shape[axis]! * inner;
      for (let o = 0; o < outer; o++) y.data.set(x.data.subarray(o * len, (o + 1) * len), o * total + at);
      at += len;
    }
    return [y];
  },
};

function reduceSum(shape: readonly number[], data: Float64Array, axes: readonly number[], outShape: readonly number[], scale: number) {
  // Iterate the input; each element adds into the output index with reduced axes dropped.
  const keep = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const y = ref(outShape);
  const ys = stridesOf(keep).map((st, i) => (axes.includes(i) ? 0 : st));
  forEachStrided(shape, ys, (i, off) => (y.data[off]! += data[i]!));
  if (scale !== 1) for (let i = 0; i < y.data.length; i++) y.data[i]! *= scale;
  return y;
}
