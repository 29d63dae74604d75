import { numel } from '../../ir/ndarray.js';
import { normAxis } from '../../ir/ops.js';
import { type Tensor, arange, batchNormTrainGrad, emit1, layerNormGrad, zeros } from '../../tensor/tensor.js';
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

/** The sum of the terms that are there (undefined if none is). */
function sum(terms: readonly (Tensor | undefined)[]): Tensor | undefined {
  return terms.reduce<Tensor | undefined>((acc, t) => (t ? (acc ? acc.add(t) : t) : acc), undefined);
}

/** Every axis of x [N, C, ...] but the channel axis. */
const statAxes = (x: Tensor) => [0, ...range(2, x.rank)];

/**
 * The second-order rule of layer_norm_grad and batch_norm_train_grad. Both compute, for each group of
 * values normalised together (reduced over the `features` axes), with x̂ = (x − μ)·r and u = g·w,
 *   gx = r·P(u) with P(v) = v − mean(v) − x̂·mean(v·x̂),  gw = Σ g·x̂,  gb = Σ g  (sums over `paramAxes`).
 * P is symmetric, so ⟨h, gx⟩ = ⟨r·P(h), u⟩: u's cotangent r·P(h) is the op itself on h, unweighted.
 * x̂'s cotangent, from gx's last term and from gw, is −r·(h·mean(u·x̂) + u·mean(h·x̂)) + hw·g; it
 * reaches x, μ and r through x̂, and r also scales gx directly (∂⟨h, gx⟩/∂r = ⟨h, gx⟩/r).
 * Statistics, parameters and their cotangents broadcast against x (size-1 axes), as do dmean, drstd and dw.
 */
interface NormGrad {
  x: Tensor;
  g: Tensor;
  mean: Tensor;
  rstd: Tensor;
  w: Tensor | undefined;
  /** The op's own output gx. */
  gx: Tensor;
  features: number[];
  paramAxes: number[];
  /** r·P(h): the op on cotangent h without a weight. */
  unweighted: (h: Tensor) => Tensor;
}

function normGradVjp(s: NormGrad, [h, hw, hb]: readonly (Tensor | undefined)[], needs: readonly boolean[]) {
  const rowMean = (t: Tensor) => t.mean(s.features, true);
  const centred = s.x.sub(s.mean);
  const xhat = centred.mul(s.rstd);
  const u = s.w ? s.g.mul(s.w) : s.g;
  const rPh = h ? s.unweighted(h) : undefined;
  const dg = needs[1] ? sum([rPh && s.w ? rPh.mul(s.w) : rPh, hw && xhat.mul(hw), hb?.expand([...s.x.shape])]) : undefined;
  const dw = needs[4] && rPh ? s.g.mul(rPh).sum(s.paramAxes, true) : undefined;
  if (!needs[0] && !needs[2] && !needs[3]) return { dg, dw };
  const dxhat = sum([h && h.mul(rowMean(u.mul(xhat))).add(u.mul(rowMean(h.mul(xhat)))).mul(s.rstd).neg(), hw && s.g.mul(hw)]);
  const dx = dxhat?.mul(s.rstd);
  return {
    dx: needs[0] ? dx : undefined,
    dg,
    dmean: needs[2] ? dx?.sum(s.features, true).neg() : undefined,
    drstd: needs[3] ? sum([dxhat && centred.mul(dxhat).sum(s.features, true), h && h.mul(s.gx).sum(s.features, true).div(s.rstd)]) : undefined,
    dw,
  };
}

export const nnRules: RuleTable<
  'pad' | 'gather' | 'gather_elements' | 'scatter_add' | 'reduce_max' | 'softmax' | 'log_softmax' | 'layer_norm' | 'layer_norm_grad' | 'batch_norm' | 'batch_norm_train' | 'batch_norm_train_grad' | 'topk'
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
  // One op (a fused kernel where the runtime has it), fed the forward's own mean and 1/std. Those
  // statistics get cotangents only in second-order gradients: dμ/dx = 1/n, d(1/std)/dx = −r³·(x − μ)/n.
  layer_norm: ({ inputs: [x, w], outputs: [, mean, rstd], attrs: { axis }, needs }, [g, gMean, gRstd]) => {
    const [gx, gw, gb] = g ? layerNormGrad(x!, g, mean!, rstd!, w, axis) : [];
    const n = numel(x!.shape.slice(normAxis(axis, x!.rank)));
    const dx = needs[0] ? sum([gx, gMean?.div(n).expand([...x!.shape]), gRstd && x!.sub(mean!).mul(rstd!.pow(3).mul(gRstd).div(-n))]) : undefined;
    return [dx, needs[1] ? gw : undefined, needs[2] ? gb : undefined];
  },
  layer_norm_grad: ({ inputs: [x, g, mean, rstd, w], outputs: [gx], attrs: { axis }, needs }, cots) => {
    const ax = normAxis(axis, x!.rank);
    const unweighted = (h: Tensor) => layerNormGrad(x!, h, mean!, rstd!, undefined, axis)[0];
    const d = normGradVjp({ x: x!, g: g!, mean: mean!, rstd: rstd!, w, gx: gx!, features: range(ax, x!.rank), paramAxes: range(0, ax), unweighted }, cots, needs);
    return [d.dx, d.dg, d.dmean, d.drstd, d.dw?.reshape([...w!.shape])];
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
  // One op (a fused kernel where the runtime has it). The batch mean μ and biased variance σ² are
  // outputs too (running-stat updates read them); their cotangents, where something differentiates
  // them, flow back into x through dμ/dx = 1/n and dσ²/dx = 2(x − μ)/n: one per-channel affine map of x.
  batch_norm_train: ({ inputs: [x, w], outputs: [, mean, variance], attrs: { epsilon }, needs }, [gy, gm, gv]) => {
    const [gx, gw, gb] = gy ? batchNormTrainGrad(x!, gy, mean!, variance!, w, epsilon) : [];
    let dx = needs[0] ? gx : undefined;
    if (needs[0] && (gm || gv)) {
      const n = x!.size / x!.shape[1]!;
      const zero = zeros([x!.shape[1]!], x!.dtype);
      const k2 = gv ? gv.mul(2 / n) : zero;
      const stats = channelAffine(x!, k2, sum([gm?.div(n), k2.mul(mean!).neg()])!);
      dx = dx ? dx.add(stats) : stats;
    }
    return [dx, needs[1] ? gw : undefined, needs[2] ? gb : undefined];
  },
  batch_norm_train_grad: ({ inputs: [x, g, mean, variance, w], outputs: [gx], attrs: { epsilon }, needs }, cots) => {
    const shape = perChannel(x!);
    const axes = statAxes(x!);
    const r = variance!.add(epsilon).rsqrt();
    const unweighted = (h: Tensor) => batchNormTrainGrad(x!, h, mean!, variance!, undefined, epsilon)[0];
    const channel = (t: Tensor | undefined) => t?.reshape(shape);
    const [h, hw, hb] = cots;
    const d = normGradVjp({ x: x!, g: g!, mean: mean!.reshape(shape), rstd: r.reshape(shape), w: channel(w), gx: gx!, features: axes, paramAxes: axes, unweighted }, [h, channel(hw), channel(hb)], needs);
    const c = [x!.shape[1]!];
    // r = (σ² + ε)^(−1/2): dr/dσ² = −r³/2
    return [d.dx, d.dg, d.dmean?.reshape(c), d.drstd?.reshape(c).mul(r.pow(3)).mul(-0.5), d.dw?.reshape(c)];
  },
  // Indices are not differentiable; the values' cotangent goes back to where they came from.
  topk: ({ inputs: [x], outputs: [, indices], attrs: { axis }, needs }, [gv]) => [needs[0] && gv ? zeros(x!.shape, gv.dtype).scatterAdd(axis, indices!, gv) : undefined],
};
