import type { OpName } from '../../ir/ops.js';
import { elementwiseRules } from './elementwise.js';
import { layoutRules } from './layout.js';
import type { VjpRule } from './types.js';

/** One VJP rule per primitive. */
export const RULES: { readonly [K in OpName]?: VjpRule<K> } = {
  ...elementwiseRules,
  ...layoutRules,
};
