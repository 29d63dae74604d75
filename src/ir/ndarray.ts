import { NonFiniteError, ShapeError, fmtShape } from '../errors.js';

/** Element types of the IR. float64 is the reference interpreter's precision. */
export type DType = 'float32' | 'float64' | 'int64' | 'bool';

export const DTYPES: readonly DType[] = ['float32', 'float64', 'int64', 'bool'];

export interface ArrayFor {
  float32: Float32Array;
  float64: Float64Array;
  int64: BigInt64Array;
  bool: Uint8Array;
}
export type AnyArray = ArrayFor[DType];

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

/** Whether two shapes are the same dimensions. */
export function sameShape(p: readonly number[], q: readonly number[]): boolean {
  return p.length === q.length && p.every((d, i) => d === q[i]);
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a shape, in elements. */
export function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

/** The typed array that holds each dtype. */
export const TYPED_ARRAY = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, bool: Uint8Array } as const;

export function allocate<D extends DType>(dtype: D, size: number): ArrayFor[D] {
  return new TYPED_ARRAY[dtype](size) as ArrayFor[D];
}

/**
 * A concrete, dense, row-major array: what goes into and comes out of a
 * compiled graph, and what parameters hold. (The symbolic counterpart is
 * `Tensor`.)
 */
export class NDArray<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: ArrayFor[D];

  constructor(dtype: D, shape: readonly number[], data?: ArrayFor[D]) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError(`NDArray: invalid shape ${fmtShape(shape)}: dimensions must be non-negative integers`);
    }
    const size = numel(shape);
    const buf = data ?? allocate(dtype, size);
    if (buf.length !== size) {
      throw new ShapeError(`NDArray: shape ${fmtShape(shape)} holds ${size} elements but the data has ${buf.length}`);
    }
    this.dtype = dtype;
    this.shape = [...shape];
    this.data = buf;
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  static zeros<D extends DType>(dtype: D, shape: readonly number[]): NDArray<D> {
    return new NDArray(dtype, shape);
  }

  static float32(shape: readonly number[], values?: ArrayLike<number>): NDArray<'float32'> {
    return new NDArray('float32', shape, values ? Float32Array.from(values) : undefined);
  }

  static float64(shape: readonly number[], values?: ArrayLike<number>): NDArray<'float64'> {
    return new NDArray('float64', shape, values ? Float64Array.from(values) : undefined);
  }

  static int64(shape: readonly number[], values?: ArrayLike<number>): NDArray<'int64'> {
    const data = new BigInt64Array(numel(shape));
    if (values) for (let i = 0; i < data.length; i++) data[i] = BigInt(values[i]!);
    return new NDArray('int64', shape, data);
  }

  static scalar(value: number, dtype: 'float32' | 'float64' = 'float32'): NDArray {
    return dtype === 'float32' ? NDArray.float32([], [value]) : NDArray.float64([], [value]);
  }

  /** Element i as a JS number (int64 converted; exact below 2^53). */
  get(i: number): number {
    const v = this.data[i]!;
    return typeof v === 'bigint' ? Number(v) : v;
  }

  /** All elements as float64 (int64 and bool converted). */
  toFloat64(): Float64Array {
    if (this.data instanceof Float64Array) return this.data;
    const out = new Float64Array(this.size);
    for (let i = 0; i < out.length; i++) out[i] = this.get(i);
    return out;
  }

  /** A copy in another dtype. Floats to int64 truncate toward zero. */
  astype<T extends DType>(dtype: T): NDArray<T> {
    const out = allocate(dtype, this.size);
    for (let i = 0; i < out.length; i++) {
      const v = this.get(i);
      if (dtype === 'int64') (out as BigInt64Array)[i] = BigInt(Math.trunc(v));
      else if (dtype === 'bool') (out as Uint8Array)[i] = v !== 0 ? 1 : 0;
      else (out as Float32Array | Float64Array)[i] = v;
    }
    return new NDArray(dtype, this.shape, out);
  }

  reshape(shape: readonly number[]): NDArray<D> {
    return new NDArray(this.dtype, shape, this.data);
  }

  /** Throws NonFiniteError naming `what` if any element is NaN or ±Inf. */
  assertFinite(what: string): void {
    if (!isFloat(this.dtype)) return;
    const d = this.data as Float32Array | Float64Array;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i]!)) {
        throw new NonFiniteError(`${what}: element ${i} is ${d[i]} (shape ${fmtShape(this.shape)}); only finite values are allowed here`);
      }
    }
  }
}
