import type { OpName } from '../../ir/ops.js';
import { convKernels } from './kernels/conv.js';
import { elementwiseKernels } from './kernels/elementwise.js';
import { layoutKernels } from './kernels/layout.js';
import { nnKernels } from './kernels/nn.js';
import type { Kernel } from './types.js';

/** One float64 reference kernel per primitive. */
export const KERNELS: { readonly [K in OpName]?: Kernel<K> } = {
  ...convKernels,
  ...elementwiseKernels,
  ...layoutKernels,
  ...nnKernels,
};
