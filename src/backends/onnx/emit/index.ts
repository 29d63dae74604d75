import type { OpName } from '../../../ir/ops.js';
import { convEmitters } from './conv.js';
import { elementwiseEmitters } from './elementwise.js';
import { layoutEmitters } from './layout.js';
import { nnEmitters } from './nn.js';
import type { Emitter } from './types.js';

/** One ONNX lowering per primitive. */
export const EMITTERS: { readonly [K in OpName]?: Emitter } = {
  ...convEmitters,
  ...elementwiseEmitters,
  ...layoutEmitters,
  ...nnEmitters,
};
