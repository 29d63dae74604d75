import type { ValueType } from '../../ir/graph.js';
import type { AttrsOf, OpName } from '../../ir/ops.js';

/** The reference interpreter's array: float64 for every dtype (int64 exact below 2^53, bool as 0/1). */
export interface RefArray {
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

/** Computes a node's outputs from its inputs. `out` holds the inferred output types. */
export type Kernel<K extends OpName> = (inputs: readonly RefArray[], attrs: AttrsOf<K>, out: readonly ValueType[]) => RefArray[];

export type KernelTable<Ks extends OpName> = { readonly [K in Ks]: Kernel<K> };
