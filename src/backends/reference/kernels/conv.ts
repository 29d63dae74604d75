import { type WindowAttrs, windowOut } from '../../../ir/ops.js';
import type { KernelTable, RefArray } from '../types.js';
import { ref } from './util.js';

/**
 * For each kernel tap i along one axis: the range [lo, hi) of window positions
 * q (0 ≤ q < count) whose input coordinate q·s − p + i·d lies in [0, size).
 * Precomputing it keeps the bounds checks out of the inner loops.
 */
function tapRanges(size: number, count: number, k: number, s: number, p: number, d: number): [number, number][] {
  return Array.from({ length: k }, (_, i) => {
    const off = i * d - p;
    const lo = Math.min(count, Math.max(0, Math.ceil(-off / s)));
    const hi = Math.min(count, Math.floor((size - 1 - off) / s) + 1);
    return [lo, Math.max(lo, hi)];
  });
}

export const convKernels: KernelTable<'conv2d' | 'conv_transpose2d' | 'max_pool2d' | 'max_pool2d_grad' | 'avg_pool2d' | 'unfold' | 'fold'> = {
  conv2d: ([x, w, b], { stride: [sh, sw], padding: [pt, pl], dilation: [dh, dw], groups }, [out]) => {
    const [n, c, h, wd] = x!.shape as [number, number, number, number];
    const [o, cg, kh, kw] = w!.shape as [number, number, number, number];
    const [, , ho, wo] = out!.shape as [number, number, number, number];
    const og = o / groups;
    const rows = tapRanges(h, ho, kh, sh, pt, dh);
    const cols = tapRanges(wd, wo, kw, sw, pl, dw);
    const xd = x!.data;
    const y = ref(out!.shape);
    const yd = y.data;
    for (let bi = 0; bi < n; bi++) {
      for (let oc = 0; oc < o; oc++) {
        const yOff = (bi * o + oc) * ho * wo;
        if (b) yd.fill(b.data[oc]!, yOff, yOff + ho * wo);
        const c0 = Math.floor(oc / og) * cg;
        for (let ci = 0; ci < cg; ci++) {
          const xOff = (bi * c + c0 + ci) * h * wd;
          const wOff = (oc * cg + ci) * kh * kw;
          for (let i = 0; i < kh; i++) {
            const [r0, r1] = rows[i]!;
            for (let j = 0; j < kw; j++) {
              const wv = w!.data[wOff + i * kw + j]!;
              const [q0, q1] = cols[j]!;
              const colOff = j * dw - pl;
              for (let oh = r0; oh < r1; oh++) {
                const xr = xOff + (oh * sh - pt + i * dh) * wd + colOff;
                const yr = yOff + oh * wo;
                for (let ow = q0; ow < q1; ow++) yd[yr + ow]! += wv * xd[xr + ow * sw]!;
              }
            }
          }
        }
      }
    }
    return [y];
  },

  // The adjoint of conv2d in x: each input element scatters into the output.
  conv_transpose2d: ([x, w, b], { stride: [sh, sw], padding: [pt, pl], dilation: [dh, dw], groups }, [out]) => {
    const [n, c, h, wd] = x!.shape as [number, number, number, number];
    const [, og, kh, kw] = w!.shape as [number, number, number, number];
    const [, o, ho, wo] = out!.shape as [number, number, number, number];
    const cg = c / groups;
    const rows = tapRanges(ho, h, kh, sh, pt, dh);
    const cols = tapRanges(wo, wd, kw, sw, pl, dw);
    const xd = x!.data;
    const y = ref(out!.shape);
    const yd = y.data;
    if (b) for (let i = 0; i < n * o; i++) yd.fill(b.data[i % o]!, i * ho * wo, (i + 1) * ho * wo);
    for (let bi = 0; bi < n; bi++) {
      for (let ci = 0; ci < c; ci++) {
        const xOff = (bi * c + ci) * h * wd;
        const o0 = Math.floor(ci / cg) * og;
        for (let oc = 0; oc < og; oc++) {
          const yOff = (bi * o + o0 + oc) * ho * wo;
          const wOff = (ci * og + oc) * kh * kw;
          for (let i = 0; i < kh; i++) {
            const [r0, r1] = rows[i]!;
            for (let j = 0; j < kw; j++) {
              const wv = w!.data[wOff + i * kw + j]!;
              const [q0, q1] = cols[j]!;
              const colOff = j * dw - pl;
              for (let ih = r0; ih < r1; ih++) {
                const yr = yOff + (ih * sh - pt + i * dh) * wo + colOff;
                const xr = xOff + ih * wd;
                for (let iw = q0; iw < q1; iw++) yd[yr + iw * sw]! += wv * xd[xr + iw]!;
              }
            }
          }
        }
      }
    }
    return [y];
  },

  // Padding never wins (-inf semantics): only in-bounds elements are compared. The index is
  // the flat position in the whole input of the first maximum in row-major window order
  // (strictly greater replaces), as ONNX Runtime's MaxPool computes its Indices output.
  max_pool2d: ([x], { kernel: [kh, kw], stride: [sh, sw], padding: [pt, pl] }, [out]) => {
    const indices = ref(out!.shape);
    let at = 0;
    const values = pool(x!.shape, out!.shape, kh, kw, sh, sw, pt, pl, (base, r0, r1, c0, c1, w) => {
      const arg = firstMax(x!, base, r0, r1, c0, c1, w);
      indices.data[at++] = arg;
      // −∞ where nothing is above it (NaNs included)
      return x!.data[arg]! > -Infinity ? x!.data[arg]! : -Infinity;
    });
    return [values, indices];
  },
  max_pool2d_grad: ([x, g], { kernel: [kh, kw], stride: [sh, sw], padding: [pt, pl] }) => {
    const dx = ref(x!.shape);
    let at = 0;
    pool(x!.shape, g!.shape, kh, kw, sh, sw, pt, pl, (base, r0, r1, c0, c1, w) => {
      dx.data[firstMax(x!, base, r0, r1, c0, c1, w)] += g!.data[at++]!;
      return 0;
    });
    return [dx];
  },

  // With countIncludePad the divisor is the full window (windows never reach past the padding).
  avg_pool2d: ([x], { kernel: [kh, kw], stride: [sh, sw], padding: [pt, pl], countIncludePad }, [out]) =>
    [pool(x!.shape, out!.shape, kh, kw, sh, sw, pt, pl, (base, r0, r1, c0, c1, w) => {
      let s = 0;
      for (let r = r0; r < r1; r++) for (let q = c0; q < c1; q++) s += x!.data[base + r * w + q]!;
      return s / (countIncludePad ? kh * kw : (r1 - r0) * (c1 - c0));
    })],

  unfold: ([x], a, [out]) => {
    const y = ref(out!.shape);
    im2col(x!.shape, a, (xi, yi) => (y.data[yi] = x!.data[xi]!));
    return [y];
  },

  fold: ([x], a, [out]) => {
    const y = ref(out!.shape);
    im2col(out!.shape, a, (yi, xi) => (y.data[yi]! += x!.data[xi]!));
    return [y];
  },
};

/** Calls fn(window start/end rows and columns, clipped to the input) for every output element of a pooling. */
/**
 * The flat index of a window's first maximum in row-major order (strictly greater replaces; NaN
 * never wins), as ONNX Runtime's MaxPool computes its Indices output; the window's first element
 * where none is above −∞.
 */
function firstMax(x: RefArray, base: number, r0: number, r1: number, c0: number, c1: number, w: number): number {
  let m = -Infinity;
  let arg = base + r0 * w + c0;
  for (let r = r0; r < r1; r++) {
    for (let q = c0; q < c1; q++) {
      const v = x.data[base + r * w + q]!;
      if (v > m) [m, arg] = [v, base + r * w + q];
    }
  }
  return arg;
}

function pool(
  shape: readonly number[], outShape: readonly number[], kh: number, kw: number, sh: number, sw: number, pt: number, pl: number,
  fn: (base: number, r0: number, r1: number, c0: number, c1: number, w: number) => number,
) {
  const [n, c, h, w] = shape as [number, number, number, number];
  const [, , ho, wo] = outShape as [number, number, number, number];
  const y = ref(outShape);
  let at = 0;
  for (let p = 0; p < n * c; p++) {
    for (let oh = 0; oh < ho; oh++) {
      const r = oh * sh - pt;
      for (let ow = 0; ow < wo; ow++) {
        const q = ow * sw - pl;
        y.data[at++] = fn(p * h * w, Math.max(r, 0), Math.min(r + kh, h), Math.max(q, 0), Math.min(q + kw, w), w);
      }
    }
  }
  return y;
}

/**
 * Visits every in-bounds (image element, column element) pair of im2col on an
 * image of `shape` [N, C, H, W], as flat indices into the image and into the
 * [N, C·kh·kw, L] columns.
 */
function im2col(shape: readonly number[], a: WindowAttrs, fn: (imageIndex: number, colIndex: number) => void): void {
  const { kernel: [kh, kw], stride: [sh, sw], padding: [pt, pl, pb, pr], dilation: [dh, dw] } = a;
  const [n, c, h, w] = shape as [number, number, number, number];
  const ho = windowOut(h, kh, sh, pt, pb, dh);
  const wo = windowOut(w, kw, sw, pl, pr, dw);
  const rows = tapRanges(h, ho, kh, sh, pt, dh);
  const cols = tapRanges(w, wo, kw, sw, pl, dw);
  const l = ho * wo;
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < kh; i++) {
      const [r0, r1] = rows[i]!;
      for (let j = 0; j < kw; j++) {
        const [q0, q1] = cols[j]!;
        const colBase = (p * kh * kw + i * kw + j) * l;
        for (let oh = r0; oh < r1; oh++) {
          const xr = p * h * w + (oh * sh - pt + i * dh) * w + j * dw - pl;
          for (let ow = q0; ow < q1; ow++) fn(xr + ow * sw, colBase + oh * wo + ow);
        }
      }
    }
  }
}
