/**
 * Element decoding shared by the checkpoint readers: raw little- or
 * big-endian bytes of a storage dtype → one of the four IR dtypes, plus the
 * strided gather that turns a non-contiguous view into a dense C-order array.
 * Callers validate sizes first; the bounds checks here are the last line of
 * defence so that nothing but `FormatError` escapes on a corrupt file.
 */
import { FormatError, fmtShape } from '../errors.js';
import { type AnyArray, type DType, TYPED_ARRAY, numel } from '../ir/ndarray.js';

/** Element types found in checkpoint files (safetensors, torch storages, numpy arrays). */
export type ElementType =
  | 'float64'
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint32'
  | 'uint16'
  | 'uint8'
  | 'bool';

export const ITEM_SIZE: Readonly<Record<ElementType, number>> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint32: 4,
  uint16: 2,
  uint8: 1,
  bool: 1,
};

export interface DecodeOptions {
  /** Keep float64 data as float64 instead of narrowing it to float32 (the default policy). */
  keepFloat64?: boolean;
}

/** The IR dtype an element type decodes to: floats → float32 (float64 kept on request), integers → int64. */
export function irDType(elem: ElementType, opts: DecodeOptions = {}): DType {
  switch (elem) {
    case 'float64':
      return opts.keepFloat64 ? 'float64' : 'float32';
    case 'float32':
    case 'float16':
    case 'bfloat16':
      return 'float32';
    case 'bool':
      return 'bool';
    default:
      return 'int64';
  }
}

/** Bytes of the decoded (IR) array for `count` elements: what a loader charges against its memory budget. */
function decodedBytes(elem: ElementType, count: number, opts: DecodeOptions = {}): number {
  return count * TYPED_ARRAY[irDType(elem, opts)].BYTES_PER_ELEMENT;
}

/** True when a view with these strides is laid out densely in C order (size-1 dims may have any stride). */
function isCContiguous(shape: readonly number[], strides: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i]! !== 1 && strides[i]! !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

/** Largest element index a non-empty view touches, relative to its offset. */
function viewSpan(shape: readonly number[], strides: readonly number[]): number {
  let span = 0;
  for (let i = 0; i < shape.length; i++) span += (shape[i]! - 1) * strides[i]!;
  return span;
}

/** Typed arrays use the host's byte order; the files are little-endian (numpy arrays may not be). */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * Decodes `count` consecutive elements starting at `byteOffset` of `bytes`
 * into a fresh IR array (float16/bfloat16 widen to float32, integers to int64,
 * float64 narrows to float32 unless `keepFloat64`). Bools must be 0 or 1.
 */
export function decodeElements(
  bytes: Uint8Array,
  byteOffset: number,
  count: number,
  elem: ElementType,
  littleEndian: boolean,
  opts: DecodeOptions = {},
): AnyArray {
  const size = ITEM_SIZE[elem];
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || !Number.isSafeInteger(count) || count < 0 || byteOffset + count * size > bytes.length) {
    throw new FormatError(`cannot read ${count} ${elem} elements at byte ${byteOffset} of a ${bytes.length}-byte buffer: the file is truncated or corrupt`);
  }
  if (littleEndian && HOST_LITTLE_ENDIAN) {
    // Same byte order as the host: one memcpy into a fresh (aligned) buffer beats an element loop by far.
    // (Not `bytes.slice`: on a Node Buffer that is a view, not a copy.)
    const raw = (): ArrayBuffer => {
      const copy = new Uint8Array(count * size);
      copy.set(bytes.subarray(byteOffset, byteOffset + count * size));
      return copy.buffer;
    };
    if (elem === 'float32') return new Float32Array(raw());
    if (elem === 'float64') return opts.keepFloat64 ? new Float64Array(raw()) : new Float32Array(new Float64Array(raw()));
    if (elem === 'int64') return new BigInt64Array(raw());
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + byteOffset, count * size);
  const le = littleEndian;
  switch (elem) {
    case 'float64': {
      const out = opts.keepFloat64 ? new Float64Array(count) : new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat64(i * 8, le);
      return out;
    }
    case 'float32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getFloat32(i * 4, le);
      return out;
    }
    case 'float16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(dv.getUint16(i * 2, le));
      return out;
    }
    case 'bfloat16': {
      // bfloat16 is the top half of a float32: widen the bits through a shared buffer.
      const out = new Float32Array(count);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = dv.getUint16(i * 2, le) << 16;
      return out;
    }
    case 'int64': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = dv.getBigInt64(i * 8, le);
      return out;
    }
    case 'int32': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(dv.getInt32(i * 4, le));
      return out;
    }
    case 'int16': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(dv.getInt16(i * 2, le));
      return out;
    }
    case 'int8': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(dv.getInt8(i));
      return out;
    }
    case 'uint32': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(dv.getUint32(i * 4, le));
      return out;
    }
    case 'uint16': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(dv.getUint16(i * 2, le));
      return out;
    }
    case 'uint8': {
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(dv.getUint8(i));
      return out;
    }
    case 'bool': {
      const out = new Uint8Array(count);
      for (let i = 0; i < count; i++) {
        const v = dv.getUint8(i);
        if (v > 1) throw new FormatError(`bool element ${i} holds the byte ${v}; bools must be stored as 0 or 1, so the file is corrupt`);
        out[i] = v;
      }
      return out;
    }
  }
}

function gatherInto<E>(src: { readonly [i: number]: E }, out: { [i: number]: E }, base: number, shape: readonly number[], strides: readonly number[]): void {
  const rank = shape.length;
  if (rank === 0) {
    out[0] = src[base]!;
    return;
  }
  const last = rank - 1;
  const lastSize = shape[last]!;
  const lastStride = strides[last]!;
  const idx = new Array<number>(rank).fill(0);
  let o = 0;
  for (;;) {
    for (let k = 0, p = base; k < lastSize; k++, p += lastStride) out[o++] = src[p]!;
    // Odometer over the outer dims.
    let d = last - 1;
    for (; d >= 0; d--) {
      idx[d]!++;
      base += strides[d]!;
      if (idx[d]! < shape[d]!) break;
      base -= strides[d]! * shape[d]!;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

/**
 * Dense C-order copy of the view `(base, shape, strides)` of `src` (element
 * units). The caller has checked that the view is non-empty and inside `src`.
 */
function gather(src: AnyArray, base: number, shape: readonly number[], strides: readonly number[]): AnyArray {
  const n = numel(shape);
  if (n <= 0 || base < 0 || base + viewSpan(shape, strides) >= src.length) {
    throw new FormatError(`strided view ${fmtShape(shape)} (strides ${fmtShape(strides)}, offset ${base}) does not fit a ${src.length}-element storage`);
  }
  if (src instanceof Float32Array) {
    const out = new Float32Array(n);
    gatherInto(src, out, base, shape, strides);
    return out;
  }
  if (src instanceof Float64Array) {
    const out = new Float64Array(n);
    gatherInto(src, out, base, shape, strides);
    return out;
  }
  if (src instanceof BigInt64Array) {
    const out = new BigInt64Array(n);
    gatherInto(src, out, base, shape, strides);
    return out;
  }
  const out = new Uint8Array(n);
  gatherInto(src, out, base, shape, strides);
  return out;
}

/**
 * Dense IR array of the strided view `(offset, shape, strides)` (element
 * units, strides ≥ 0) of a raw storage. `charge` is called with the bytes about
 * to be allocated before any allocation, so a loader can cap how much memory a
 * small hostile file may make it allocate (e.g. many views of one storage, or
 * a zero-stride broadcast of one element to a huge shape).
 */
export function decodeView(
  bytes: Uint8Array,
  elem: ElementType,
  littleEndian: boolean,
  view: { offset: number; shape: readonly number[]; strides: readonly number[] },
  charge: (nbytes: number) => void,
  what: string,
  opts: DecodeOptions = {},
): AnyArray {
  const { offset, shape, strides } = view;
  const n = numel(shape);
  if (n === 0) return decodeElements(bytes, 0, 0, elem, littleEndian, opts);
  const size = ITEM_SIZE[elem];
  const available = Math.floor(bytes.length / size);
  const span = viewSpan(shape, strides);
  if (offset + span >= available) {
    throw new FormatError(
      `${what}: the view ${fmtShape(shape)} with strides ${fmtShape(strides)} at offset ${offset} reaches element ${offset + span}, but its storage holds only ${available} ${elem} elements; the file is corrupt`,
    );
  }
  charge(decodedBytes(elem, n, opts));
  if (isCContiguous(shape, strides)) return decodeElements(bytes, offset * size, n, elem, littleEndian, opts);
  // Non-contiguous (a transposed or sliced view): decode the span once, then gather.
  charge(decodedBytes(elem, span + 1, opts));
  return gather(decodeElements(bytes, offset * size, span + 1, elem, littleEndian, opts), 0, shape, strides);
}
