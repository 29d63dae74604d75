import { sameShape } from '../../ir/ndarray.js';
import { type Tensor, batchNorm, zeros } from '../../tensor/tensor.js';

/** Sums a broadcast cotangent back down to `shape` (the inverse of broadcasting). */
export function unbroadcast(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return g.sum(axes, true).reshape([...shape]);
}

/**
 * x·scale + shift per channel (axis 1) in ONE pass: an eval-mode batch_norm
 * with mean 0, variance 0 and ε = 1 is exactly that affine map, where ONNX
 * has no op for it and a Mul then an Add would be two passes over x.
 * ONNX Runtime runs that kernel on one thread, so at 2 threads it takes about
 * as long as the two parallel passes (8×768×14×14: 0.39 ms against 0.51).
 */
export function channelAffine(x: Tensor, scale: Tensor, shift: Tensor): Tensor {
  const zero = zeros([x.shape[1]!], x.dtype);
  return batchNorm(x, scale, shift, zero, zero, 1);
}

