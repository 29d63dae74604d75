import type { Node } from '../../../ir/graph.js';
import type { OpName } from '../../../ir/ops.js';
import type { EmitContext } from '../model.js';

/** ONNX Runtime's contrib-op domain (its fused kernels, e.g. Gelu). */
export const MS_DOMAIN = 'com.microsoft';

/** ONNX Runtime's blocked-layout (NCHWc) kernels: ReorderInput, ReorderOutput, Conv, pooling. */
export const NCHWC_DOMAIN = 'com.microsoft.nchwc';
/** volution's own fused kernels (`native/volution_kernels.c`). */
export const VOLUTION_DOMAIN = 'ai.volution';

/** The IR ops whose lowering uses one of volution's fused kernels (float32 only) where the session loads them. */
const FUSED_KERNELS: ReadonlySet<OpName> = new Set<OpName>(['gelu', 'gelu_grad', 'layer_norm', 'layer_norm_grad', 'batch_norm_train', 'batch_norm_train_grad', 'max_pool2d_grad']);

/** Whether `node` has a fused kernel (its lowering then uses it in a session that loads the kernel library). */
export const hasFusedKernel = (node: Node): boolean => FUSED_KERNELS.has(node.op) && node.outputs[0]!.dtype === 'float32';

/**
 * Lowers one IR node to ONNX nodes. `inputs` are the ONNX names of the
 * node's inputs; returns the names of its outputs, in order.
 */
export type Emitter = (ctx: EmitContext, node: Node, inputs: readonly string[]) => string[];

export type EmitterTable<Ks extends OpName> = { readonly [K in Ks]: Emitter };

/** The typed attributes of a node of a known op. */
export function attrsOf<K extends OpName>(node: Node, _op: K): import('../../../ir/ops.js').AttrsOf<K> {
  return node.attrs as never;
}
