import { RuntimeFailure } from '../../../errors.js';
import { numel, stridesOf } from '../../../ir/ndarray.js';
import { normAxis } from '../../../ir/ops.js';
import type { KernelTable, RefArray } from '../types.js';
import { forEachStrided, ref } from './util.js';

/** Views `shape` around `axis` as [outer, d, inner] (row-major). */
function around(shape: readonly number[], axis: number): [number, number, number] {
  return [numel(shape.slice(0, axis)), shape[axis]!, numel(shape.slice(axis + 1))];
}

/** An index along an axis of size `d`, negative counting from the end (ONNX); throws when out of range. */
function wrapIndex(v: number, d: number, op: string, axis: number): number {
  if (!Number.isInteger(v) || v < -d || v >= d) throw new RuntimeFailure(`reference ${op}: index ${v} is out of range for axis ${axis} of size ${d}`);
  return v < 0 ? v + d : v;
}

/**
 * Calls fn(i, base, at) for each element i of `idx` (same rank as `data`): base is
 * the data offset of i with its `axis` coordinate set to 0, at the index stored there.
 */
function forEachElementIndex(data: readonly number[], idx: RefArray, axis: number, fn: (i: number, base: number, at: number) => void): void {
  const s = stridesOf(data);
  forEachStrided(idx.shape, s.map((st, d) => (d === axis ? 0 : st)), (i, base) => fn(i, base, idx.data[i]!));
}

/** Per-channel statistics of x [N, C, ...] over every axis but 1: mean and biased variance. */
function channelStats(x: RefArray): { mean: Float64Array; variance: Float64Array } {
  const [n, c, s] = around(x.shape, 1);
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  const m = n * s;
  for (let ch = 0; ch < c; ch++) {
    let sum = 0;
    for (let b = 0; b < n; b++) for (let k = 0; k < s; k++) sum += x.data[(b * c + ch) * s + k]!;
    const mu = sum / m;
    let sq = 0;
    for (let b = 0; b < n; b++) for (let k = 0; k < s; k++) sq += (x.data[(b * c + ch) * s + k]! - mu) ** 2;
    mean[ch] = mu;
    variance[ch] = sq / m;
  }
  return { mean, variance };
}

/** y = (x − mean[c]) / sqrt(var[c] + eps) · w[c] + b[c] over x [N, C, ...]. */
function normalizeChannels(x: RefArray, w: RefArray, b: RefArray, mean: ArrayLike<number>, variance: ArrayLike<number>, eps: number): RefArray {
  const [n, c, s] = around(x.shape, 1);
  const y = ref(x.shape);
  for (let bi = 0; bi < n; bi++) {
    for (let ch = 0; ch < c; ch++) {
      const scale = w.data[ch]! / Math.sqrt(variance[ch]! + eps);
      for (let k = 0; k < s; k++) {
        const o = (bi * c + ch) * s + k;
        y.data[o] = (x.data[o]! - mean[ch]!) * scale + b.data[ch]!;
      }
    }
  }
  return y;
}

/** Calls fn for each 1-D lane of `shape` along `axis`: at(j) is the offset of lane element j; (o, k) its outer and inner position. */
function forEachLane(shape: readonly number[], axis: number, fn: (at: (j: number) => number, o: number, k: number) => void): void {
  const [outer, d, inner] = around(shape, axis);
  for (let o = 0; o < outer; o++) for (let k = 0; k < inner; k++) fn((j) => (o * d + j) * inner + k, o, k);
}

export const nnKernels: KernelTable<
  'pad' | 'gather' | 'gather_elements' | 'scatter_add' | 'reduce_max' | 'softmax' | 'log_softmax' | 'layer_norm' | 'layer_norm_grad' | 'batch_norm' | 'batch_norm_train' | 'batch_norm_train_grad' | 'topk' | 'self_attention'
> = {
  pad: ([x], { pads, mode, value }, [out]) => {
    const r = x!.shape.length;
    const xs = stridesOf(x!.shape);
    const y = ref(out!.shape);
    const idx = new Array<number>(r).fill(0);
    for (let i = 0; i < y.data.length; i++) {
      let off = 0;
      let inside = true;
      for (let d = 0; d < r; d++) {
        const n = x!.shape[d]!;
        let j = idx[d]! - pads[d]!;
        // reflect mirrors about the edge element (which is not repeated); pads < n is checked at trace time
        if (mode === 'reflect') j = j < 0 ? -j : j >= n ? 2 * (n - 1) - j : j;
        else if (j < 0 || j >= n) inside = false;
        off += j * xs[d]!;
      }
      y.data[i] = inside ? x!.data[off]! : value;
      for (let d = r - 1; d >= 0; d--) {
        if (++idx[d]! < out!.shape[d]!) break;
        idx[d] = 0;
      }
    }
    return [y];
  },
  gather: ([x, idx], { axis }, [out]) => {
    const ax = normAxis(axis, x!.shape.length);
    const [outer, d, inner] = around(x!.shape, ax);
    const k = idx!.data.length;
    const y = ref(out!.shape);
    for (let j = 0; j < k; j++) {
      const at = wrapIndex(idx!.data[j]!, d, 'gather', ax);
      for (let o = 0; o < outer; o++) y.data.set(x!.data.subarray((o * d + at) * inner, (o * d + at + 1) * inner), (o * k + j) * inner);
    }
    return [y];
  },
  gather_elements: ([x, idx], { axis }) => {
    const ax = normAxis(axis, x!.shape.length);
    const d = x!.shape[ax]!;
    const st = stridesOf(x!.shape)[ax]!;
    const y = ref(idx!.shape);
    forEachElementIndex(x!.shape, idx!, ax, (i, base, at) => (y.data[i] = x!.data[base + wrapIndex(at, d, 'gather_elements', ax) * st]!));
    return [y];
  },
  scatter_add: ([x, idx, upd], { axis }) => {
    const ax = normAxis(axis, x!.shape.length);
    const d = x!.shape[ax]!;
    const st = stridesOf(x!.shape)[ax]!;
    const y = ref(x!.shape, Float64Array.from(x!.data));
    forEachElementIndex(x!.shape, idx!, ax, (i, base, at) => (y.data[base + wrapIndex(at, d, 'scatter_add', ax) * st]! += upd!.data[i]!));
    return [y];
  },
  reduce_max: ([x], { axes }, [out]) => {
    const r = x!.shape.length;
    const reduced = new Set(axes.map((a) => normAxis(a, r)));
    // Iterate the input; each element maxes into the output index with reduced axes dropped.
    const keep = x!.shape.map((d, i) => (reduced.has(i) ? 1 : d));
    const ys = stridesOf(keep).map((st, i) => (reduced.has(i) ? 0 : st));
    const y = ref(out!.shape, new Float64Array(numel(out!.shape)).fill(-Infinity));
    forEachStrided(x!.shape, ys, (i, off) => (y.data[off] = Math.max(y.data[off]!, x!.data[i]!)));
    return [y];
  },
  softmax: ([x], { axis }) => [softmaxLanes(x!, normAxis(axis, x!.shape.length), false)],
  log_softmax: ([x], { axis }) => [softmaxLanes(x!, normAxis(axis, x!.shape.length), true)],
  layer_norm: ([x, w, b], { axis, epsilon }) => {
    const ax = normAxis(axis, x!.shape.length);
    const m = numel(x!.shape.slice(ax));
    const rows = x!.data.length / Math.max(m, 1);
    const y = ref(x!.shape);
    const statShape = x!.shape.map((d, i) => (i < ax ? d : 1));
    const means = ref(statShape);
    const rstds = ref(statShape);
    for (let r = 0; r < rows; r++) {
      const row = x!.data.subarray(r * m, (r + 1) * m);
      let mu = 0;
      for (const v of row) mu += v;
      mu /= m;
      let variance = 0;
      for (const v of row) variance += (v - mu) ** 2;
      const rstd = 1 / Math.sqrt(variance / m + epsilon);
      means.data[r] = mu;
      rstds.data[r] = rstd;
      for (let j = 0; j < m; j++) y.data[r * m + j] = (row[j]! - mu) * rstd * (w ? w.data[j]! : 1) + (b ? b.data[j]! : 0);
    }
    return [y, means, rstds];
  },
  layer_norm_grad: ([x, g, mean, rstd, w], { axis }) => {
    const ax = normAxis(axis, x!.shape.length);
    const m = numel(x!.shape.slice(ax));
    const rows = x!.data.length / Math.max(m, 1);
    const gx = ref(x!.shape);
    const gw = ref(x!.shape.slice(ax));
    const gb = ref(x!.shape.slice(ax));
    // dL/dx = r·(g·w − mean(g·w) − x̂·mean(g·w·x̂)) per row, x̂ = (x − μ)·r
    for (let r = 0; r < rows; r++) {
      const [mu, rs] = [mean!.data[r]!, rstd!.data[r]!];
      const xhat = (j: number) => (x!.data[r * m + j]! - mu) * rs;
      const gxw = (j: number) => g!.data[r * m + j]! * (w ? w.data[j]! : 1);
      let meanG = 0;
      let meanGx = 0;
      for (let j = 0; j < m; j++) {
        meanG += gxw(j) / m;
        meanGx += (gxw(j) * xhat(j)) / m;
        gw.data[j] += g!.data[r * m + j]! * xhat(j);
        gb.data[j] += g!.data[r * m + j]!;
      }
      for (let j = 0; j < m; j++) gx.data[r * m + j] = rs * (gxw(j) - meanG - xhat(j) * meanGx);
    }
    return [gx, gw, gb];
  },
  batch_norm: ([x, w, b, mean, variance], { epsilon }) => [normalizeChannels(x!, w!, b!, mean!.data, variance!.data, epsilon)],
  batch_norm_train: ([x, w, b], { epsilon }) => {
    const { mean, variance } = channelStats(x!);
    return [normalizeChannels(x!, w!, b!, mean, variance, epsilon), ref([mean.length], mean), ref([mean.length], variance)];
  },
  // With S1 = Σ g, S2 = Σ g·x̂ per channel: gx = w·r·(g − S1/m − x̂·S2/m), gw = S2, gb = S1.
  batch_norm_train_grad: ([x, g, mean, variance, w], { epsilon }) => {
    const [n, c, s] = around(x!.shape, 1);
    const m = n * s;
    const [gx, gw, gb] = [ref(x!.shape), ref([c]), ref([c])];
    const at = (bi: number, ch: number, k: number) => (bi * c + ch) * s + k;
    for (let ch = 0; ch < c; ch++) {
      const r = 1 / Math.sqrt(variance!.data[ch]! + epsilon);
      const xhat = (o: number) => (x!.data[o]! - mean!.data[ch]!) * r;
      let [s1, s2] = [0, 0];
      for (let bi = 0; bi < n; bi++) {
        for (let k = 0; k < s; k++) {
          s1 += g!.data[at(bi, ch, k)]!;
          s2 += g!.data[at(bi, ch, k)]! * xhat(at(bi, ch, k));
        }
      }
      const wr = (w ? w.data[ch]! : 1) * r;
      for (let bi = 0; bi < n; bi++) for (let k = 0; k < s; k++) gx.data[at(bi, ch, k)] = wr * (g!.data[at(bi, ch, k)]! - s1 / m - (xhat(at(bi, ch, k)) * s2) / m);
      [gw.data[ch], gb.data[ch]] = [s2, s1];
    }
    return [gx, gw, gb];
  },
  self_attention: ([x, w, b], { heads, scale }) => {
    const [batch, n, c] = x!.shape as [number, number, number];
    const d = c / heads;
    // qkv[t][3c]: the projection of token t
    const qkv = new Float64Array(batch * n * 3 * c);
    for (let t = 0; t < batch * n; t++) {
      for (let o = 0; o < 3 * c; o++) {
        let acc = b!.data[o]!;
        for (let i = 0; i < c; i++) acc += x!.data[t * c + i]! * w!.data[i * 3 * c + o]!;
        qkv[t * 3 * c + o] = acc;
      }
    }
    const at = (img: number, tok: number, part: number, head: number, j: number) => qkv[(img * n + tok) * 3 * c + part * c + head * d + j]!;
    const y = ref(x!.shape);
    const logits = new Float64Array(n);
    for (let img = 0; img < batch; img++) {
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < n; i++) {
          let mx = -Infinity;
          for (let j = 0; j < n; j++) {
            let dot = 0;
            for (let e = 0; e < d; e++) dot += at(img, i, 0, h, e) * at(img, j, 1, h, e);
            logits[j] = dot * scale;
            mx = Math.max(mx, logits[j]!);
          }
          let sum = 0;
          for (let j = 0; j < n; j++) sum += (logits[j] = Math.exp(logits[j]! - mx));
          for (let e = 0; e < d; e++) {
            let acc = 0;
            for (let j = 0; j < n; j++) acc += logits[j]! * at(img, j, 2, h, e);
            y.data[(img * n + i) * c + h * d + e] = acc / sum;
          }
        }
      }
    }
    return [y];
  },
  topk: ([x], { k, axis, largest }, [out]) => {
    const ax = normAxis(axis, x!.shape.length);
    const [, d, inner] = around(x!.shape, ax);
    const values = ref(out!.shape);
    const indices = ref(out!.shape);
    const sign = largest ? -1 : 1;
    forEachLane(x!.shape, ax, (at, o, i) => {
      // Sort by value, ties toward the lower index (ONNX TopK; PyTorch's CPU kernel does not promise it).
      const order = Array.from({ length: d }, (_, j) => j).sort((p, q) => sign * (x!.data[at(p)]! - x!.data[at(q)]!) || p - q);
      for (let j = 0; j < k; j++) {
        const dst = (o * k + j) * inner + i;
        values.data[dst] = x!.data[at(order[j]!)]!;
        indices.data[dst] = order[j]!;
      }
    });
    return [values, indices];
  },
};

function softmaxLanes(x: RefArray, axis: number, log: boolean): RefArray {
  const y = ref(x.shape);
  const d = x.shape[axis]!;
  forEachLane(x.shape, axis, (at) => {
    // Subtract the lane's max so exp cannot overflow.
    let mx = -Infinity;
    for (let j = 0; j < d; j++) mx = Math.max(mx, x.data[at(j)]!);
    let sum = 0;
    for (let j = 0; j < d; j++) sum += Math.exp(x.data[at(j)]! - mx);
    const lse = Math.log(sum);
    for (let j = 0; j < d; j++) {
      const v = x.data[at(j)]! - mx - lse;
      y.data[at(j)] = log ? v : Math.exp(v);
    }
  });
  return y;
}
