/** Weight initialisers; every one takes an explicit generator. */
import { NDArray } from '../ir/ndarray.js';
import type { Rng } from '../rng.js';

/** Normal(0, std) truncated to [lo, hi] by resampling (timm's trunc_normal_ defaults: ±2 absolute). */
export function truncNormal(rng: Rng, shape: readonly number[], std = 0.02, lo = -2, hi = 2): NDArray<'float32'> {
  const a = NDArray.float32(shape);
  for (let i = 0; i < a.size; i++) {
    let v: number;
    do v = rng.normal() * std;
    while (v < lo || v > hi);
    a.data[i] = v;
  }
  return a;
}

export function uniform(rng: Rng, shape: readonly number[], bound: number): NDArray<'float32'> {
  const a = NDArray.float32(shape);
  for (let i = 0; i < a.size; i++) a.data[i] = (rng.uniform() * 2 - 1) * bound;
  return a;
}

export function normal(rng: Rng, shape: readonly number[], std: number): NDArray<'float32'> {
  const a = NDArray.float32(shape);
  for (let i = 0; i < a.size; i++) a.data[i] = rng.normal() * std;
  return a;
}

export function filled(shape: readonly number[], value: number): NDArray<'float32'> {
  const a = NDArray.float32(shape);
  a.data.fill(value);
  return a;
}

/** fan_in of a Linear [out, in] or Conv [out, in/groups, kh, kw] weight. */
export function fanIn(shape: readonly number[]): number {
  return shape.slice(1).reduce((a, b) => a * b, 1);
}

/** PyTorch's default Linear/Conv init: kaiming_uniform(a=√5) ⇒ U(±1/√fan_in). */
export function torchDefault(rng: Rng, shape: readonly number[]): NDArray<'float32'> {
  return uniform(rng, shape, 1 / Math.sqrt(fanIn(shape)));
}
