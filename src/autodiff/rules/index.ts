import type { OpName } from '../../ir/ops.js';
import { convRules } from './conv.js';
import { elementwiseRules } from './elementwise.js';
import { layoutRules } from './layout.js';
import { nnRules } from './nn.js';
import type { VjpRule } from './types.js';

/** One VJP rule per primitive. */
export const RULES: { readonly [K in OpName]?: VjpRule<K> } = {
  ...convRules,
  ...elementwiseRules,
  ...layoutRules,
  ...nnRules,
};
