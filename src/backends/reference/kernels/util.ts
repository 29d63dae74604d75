import { numel, stridesOf } from '../../../ir/ndarray.js';
import type { RefArray } from '../types.js';

export function ref(shape: readonly number[], data?: Float64Array): RefArray {
  return { shape, data: data ?? new Float64Array(numel(shape)) };
}

/**
 * Strides that read `shape` as broadcast to `outShape` (0 on broadcast dims),
 * aligned to the right.
 */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const s = stridesOf(shape);
  const off = outShape.length - shape.length;
  return outShape.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : s[i - off]!));
}

/** Calls fn(outIndex, offsets...) over every element of `outShape`, with offsets into each input. */
export function forEachBroadcast(outShape: readonly number[], inputs: readonly (readonly number[])[], fn: (i: number, offs: number[]) => void): void {
  const strides = inputs.map((sh) => broadcastStrides(sh, outShape));
  const n = numel(outShape);
  const r = outShape.length;
  const idx = new Array<number>(r).fill(0);
  const offs = new Array<number>(inputs.length).fill(0);
  for (let i = 0; i < n; i++) {
    fn(i, offs);
    for (let d = r - 1; d >= 0; d--) {
      idx[d]!++;
      for (let k = 0; k < offs.length; k++) offs[k]! += strides[k]![d]!;
      if (idx[d]! < outShape[d]!) break;
      for (let k = 0; k < offs.length; k++) offs[k]! -= strides[k]![d]! * outShape[d]!;
      idx[d] = 0;
    }
  }
}

/** Reads `x` permuted: out[i] = x[perm-mapped index]. */
export function permute(x: RefArray, perm: readonly number[]): RefArray {
  const outShape = perm.map((p) => x.shape[p]!);
  const s = stridesOf(x.shape);
  const permStrides = perm.map((p) => s[p]!);
  const out = ref(outShape);
  forEachStrided(outShape, permStrides, (i, off) => (out.data[i] = x.data[off]!));
  return out;
}

/** Iterates an output shape with one strided input offset. */
export function forEachStrided(outShape: readonly number[], strides: readonly number[], fn: (i: number, off: number) => void, base = 0): void {
  const n = numel(outShape);
  const r = outShape.length;
  const idx = new Array<number>(r).fill(0);
  let off = base;
  for (let i = 0; i < n; i++) {
    fn(i, off);
    for (let d = r - 1; d >= 0; d--) {
      idx[d]!++;
      off += strides[d]!;
      if (idx[d]! < outShape[d]!) break;
      off -= strides[d]! * outShape[d]!;
      idx[d] = 0;
    }
  }
}
