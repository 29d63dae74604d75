import { numel } from '../../ir/ndarray.js';
import { normAxis } from '../../ir/ops.js';
import { type Tensor, arange, emit1, zeros } from '../../tensor/tensor.js';
import type { RuleTable } from './types.js';
import { channelAffine } from './util.js';

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

/** Zero-pads one axis (ONNX pad order). */
function padAxis(g: Tensor, axis: number, before: number, after: number): Tensor {
  const pads = new Array<number>(2 * g.rank).fill(0);
  pads[axis] = before;
  pads[axis + g.rank] = after;
  return emit1('pad', [g], { pads, mode: 'constant', value: 0 });
}

/** Reverses one axis: a gather with a constant descending index (slice has no negative steps). */
function reverse(g: Tensor, axis: number): Tensor {
  const n = g.shape[axis]!;
  return n === 1 ? g : g.indexSelect(axis, arange(n - 1, -1, -1));
}

/** Shape that broadcasts a per-channel [C] vector against x [N, C, ...]. */
function perChannel(x: Tensor): number[] {
  return [x.shape[1]!, ...new Array<number>(x.rank - 2).fill(1)];
}

/** Every axis of x [N, C, ...] but the channel axis. */
const statAxes = (x: Tensor) => [0, ...range(2, x.rank)];

export const nnRules: RuleTable<
  'pad' | 'gather' | 'gather_elements' | 'scatter_add' | 'reduce_max' | 'softmax' | 'log_softmax' | 'layer_norm' | 'batch_norm' | 'batch_norm_train' | 'topk'
> = {
  pad: ({ inputs: [x], attrs: { pads, mode } }, [g]) => {
    const r = x!.rank;
    const padded = range(0, r).filter((i) => pads[i]! > 0 || pads[i + r]! > 0);
    if (padded.length === 0) return [g!];
    if (mode === 'constant') {
      const starts = padded.map((i) => pads[i]!);
      return [emit1('slice', [g!], { starts, ends: padded.map((i, k) => starts[k]! + x!.shape[i]!), axes: padded, steps: padded.map(() => 1) })];
    }
    // Reflect pads each axis independently, so its VJP folds one axis at a time:
    // output p0 − i (i = 1..p0) copies input i, output p0 + d − 1 + j (j = 1..p1) copies input d − 1 − j.
    let y = g!;
    for (const ax of padded) {
      const [p0, p1, d] = [pads[ax]!, pads[ax + r]!, x!.shape[ax]!];
      let gx = y.slice(ax, p0, p0 + d);
      if (p0 > 0) gx = gx.add(padAxis(reverse(y.slice(ax, 0, p0), ax), ax, 1, d - 1 - p0));
      if (p1 > 0) gx = gx.add(padAxis(reverse(y.slice(ax, p0 + d), ax), ax, d - 1 - p1, 1));
      y = gx;
    }
    return [y];
  },
  // Scatter-add rather than a one-hot matmul: O(size of g) instead of O(size of g × axis length).
  // x and g are viewed as [outer, d, inner] and [outer, k, inner], k the number of indices.
  gather: ({ inputs: [x, idx], attrs: { axis }, needs }, [g]) => {
    if (!needs[0]) return [];
    const ax = normAxis(axis, x!.rank);
    const outer = numel(x!.shape.slice(0, ax));
    const inner = numel(x!.shape.slice(ax + 1));
    const k = idx!.size;
    const flatIdx = idx!.reshape([1, k, 1]).expand([outer, k, inner]);
    return [zeros([outer, x!.shape[ax]!, inner], g!.dtype).scatterAdd(1, flatIdx, g!.reshape([outer, k, inner])).reshape([...x!.shape])];
  },
  gather_elements: ({ inputs: [x, idx], attrs: { axis }, needs }, [g]) => [needs[0] ? zeros(x!.shape, g!.dtype).scatterAdd(axis, idx!, g!) : undefined],
  scatter_add: ({ inputs: [, idx], attrs: { axis }, needs }, [g]) => [needs[0] ? g! : undefined, undefined, needs[2] ? g!.gather(axis, idx!) : undefined],
  // PyTorch amax semantics: the cotangent is shared equally among tied maxima.
  reduce_max: ({ inputs: [x], outputs: [y], attrs: { axes } }, [g]) => {
    const ax = axes.map((a) => normAxis(a, x!.rank));
    const keep = x!.shape.map((d, i) => (ax.includes(i) ? 1 : d));
    const mask = x!.eq(y!.reshape(keep)).cast(g!.dtype);
    return [mask.mul(g!.reshape(keep).div(mask.sum(ax, true)))];
  },
  softmax: ({ outputs: [y], attrs: { axis } }, [g]) => {
    const gy = g!.mul(y!);
    return [gy.sub(y!.mul(gy.sum(axis, true)))];
  },
  log_softmax: ({ outputs: [y], attrs: { axis } }, [g]) => [g!.sub(y!.exp().mul(g!.sum(axis, true)))],
  // The forward node's own mean and 1/std outputs spare recomputing the statistics. They are
  // internal to the backward pass (layerNorm() exposes y only), so they take no cotangent.
  // dL/dx = r·(g·w − mean(g·w) − x̂·mean(g·w·x̂)), with x̂ = (x − μ)·r. Viewed as [1, rows,
  // features], rows are batch_norm's channels, so x̂ and r·(g·w) − r·mean(g·w) are one
  // channelAffine pass each; mean(g·w·x̂) is a matmul of g·x̂ (dL/dw's summand too) with w
  // rather than another full-size product: six full-size writes, where the formula as written
  // takes nine.
  layer_norm: ({ inputs: [x, w], outputs: [, mean, rstd], attrs: { axis }, needs }, [g]) => {
    if (!g) return [];
    const ax = normAxis(axis, x!.rank);
    const rows = numel(x!.shape.slice(0, ax));
    const features = x!.size / rows;
    const view = (t: Tensor) => t.reshape([1, rows, features]);
    const gb = needs[2] ? g.sum(range(0, ax)) : undefined;
    if (!needs[0] && !needs[1]) return [undefined, undefined, gb];
    const r = rstd!.reshape([rows]);
    const xhat = channelAffine(view(x!), r, mean!.reshape([rows]).mul(r).neg());
    const gxhat = view(g).mul(xhat);
    let gx: Tensor | undefined;
    if (needs[0]) {
      const gw = w ? view(g).mul(w.reshape([features])) : view(g);
      const m1 = gw.mean(-1).reshape([rows]);
      const m2 = (w ? gxhat.matmul(w.reshape([features, 1])).div(features) : gxhat.mean(-1)).reshape([rows]);
      gx = channelAffine(gw, r, m1.mul(r).neg()).sub(xhat.mul(m2.mul(r).reshape([1, rows, 1]))).reshape([...x!.shape]);
    }
    return [gx, needs[1] ? gxhat.sum([0, 1]).reshape([...w!.shape]) : undefined, gb];
  },
  // The running statistics are buffers, but their cotangents are cheap and exact, so a caller
  // that asks for them gets them rather than silent zeros.
  batch_norm: ({ inputs: [x, w, , mean, variance], attrs: { epsilon }, needs }, [g]) => {
    const shape = perChannel(x!);
    const axes = statAxes(x!);
    const rstd = variance!.add(epsilon).rsqrt();
    const xc = x!.sub(mean!.reshape(shape));
    const gxc = g!.mul(w!.mul(rstd).reshape(shape));
    const gxcSum = needs[1] || needs[4] ? g!.mul(xc).sum(axes) : undefined;
    return [
      needs[0] ? gxc : undefined,
      needs[1] ? gxcSum!.mul(rstd) : undefined,
      needs[2] ? g!.sum(axes) : undefined,
      needs[3] ? gxc.sum(axes).neg() : undefined,
      needs[4] ? gxcSum!.mul(w!).mul(rstd.pow(3)).mul(-0.5) : undefined,
    ];
  },
  // y = x̂·w + b with x̂ = (x − μ)·r, r = 1/√(σ² + ε); the batch mean μ and biased variance σ²
  // are outputs too (running-stat updates read them), so their cotangents flow back into x:
  // dμ/dx = 1/n and dσ²/dx = 2(x − μ)/n. With per-channel sums S1 = Σ gy and S2 = Σ gy·(x − μ),
  // everything collapses to gx = k1·gy + k2·(x − μ) + k3 with [C] vectors
  //   k1 = w·r,  k2 = −w·r³·S2/n + 2·gσ²/n,  k3 = −w·r·S1/n + gμ/n,
  // and k2·(x − μ) + k3 is one channelAffine pass. x − mean is the forward's own (its 4th
  // output), not recomputed: full-size passes are Mul, ReduceSum ×2, Mul, BatchNormalization, Add.
  batch_norm_train: ({ inputs: [x, w], outputs: [, , variance, centred], attrs: { epsilon }, needs }, [gy, gm, gv, gc]) => {
    const c = x!.shape[1]!;
    const axes = statAxes(x!);
    const n = x!.size / c;
    const rstd = variance!.add(epsilon).rsqrt();
    const s1 = gy ? gy.sum(axes) : undefined;
    const s2 = gy && (needs[0] || needs[1]) ? gy.mul(centred!).sum(axes) : undefined;
    let gx: Tensor | undefined;
    if (needs[0]) {
      const wr = w!.mul(rstd);
      const terms: Tensor[] = [];
      if (gy) terms.push(gy.mul(wr.reshape(perChannel(x!))));
      let k2 = s2 ? wr.mul(rstd.square()).mul(s2).mul(-1 / n) : undefined;
      let k3 = s1 ? wr.mul(s1).mul(-1 / n) : undefined;
      if (gv) k2 = k2 ? k2.add(gv.mul(2 / n)) : gv.mul(2 / n);
      if (gm) k3 = k3 ? k3.add(gm.div(n)) : gm.div(n);
      if (k2 || k3) {
        const zero = zeros([c], x!.dtype);
        terms.push(channelAffine(centred!, k2 ?? zero, k3 ?? zero));
      }
      // x − mean as an output of its own (only ever internal): its cotangent minus its mean.
      if (gc) terms.push(gc.sub(gc.mean(axes, true)));
      gx = terms.reduce((a, b) => a.add(b));
    }
    return [gx, needs[1] && s2 ? s2.mul(rstd) : undefined, needs[2] && s1 ? s1 : undefined];
  },
  // Indices are not differentiable; the values' cotangent goes back to where they came from.
  topk: ({ inputs: [x], outputs: [, indices], attrs: { axis }, needs }, [gv]) => [needs[0] && gv ? zeros(x!.shape, gv.dtype).scatterAdd(axis, indices!, gv) : undefined],
};
