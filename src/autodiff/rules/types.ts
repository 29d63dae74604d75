import type { Node } from '../../ir/graph.js';
import type { AttrsOf, OpName } from '../../ir/ops.js';
import type { Tensor } from '../../tensor/tensor.js';

export interface VjpContext<K extends OpName> {
  readonly node: Node;
  /** The node's inputs and outputs as tensors of the active trace. */
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  readonly attrs: AttrsOf<K>;
  /** needs[i]: whether input i wants a cotangent (skip the work otherwise). */
  readonly needs: readonly boolean[];
}

/**
 * A vector-Jacobian rule: given the cotangents of the node's outputs
 * (undefined where an output does not reach the loss), returns one cotangent
 * per input (undefined where not needed or not differentiable).
 */
export type VjpRule<K extends OpName> = (ctx: VjpContext<K>, gOut: readonly (Tensor | undefined)[]) => (Tensor | undefined)[];

export type RuleTable<Ks extends OpName> = { readonly [K in Ks]: VjpRule<K> };
