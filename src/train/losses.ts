/** Classification losses, written with tensor ops so autodiff and ONNX see plain IR. */
import { ShapeError, fmtShape } from '../errors.js';
import { type Tensor, oneHot } from '../tensor/tensor.js';

export interface CrossEntropyOptions {
  /** Mixes the target with the uniform distribution: (1 − ε)·y + ε/K (timm/PyTorch semantics). */
  labelSmoothing?: number;
}

/**
 * Mean cross-entropy of `logits` [B, K] against int64 class indices [B] or
 * soft targets [B, K] (mixup/cutmix).
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  if (logits.rank !== 2) throw new ShapeError(`crossEntropy: logits must be [batch, classes], got ${fmtShape(logits.shape)}`);
  const [b, k] = logits.shape as [number, number];
  const soft = target.dtype === 'int64' ? oneHot(target, k, logits.dtype) : target;
  if (soft.shape.join() !== [b, k].join()) throw new ShapeError(`crossEntropy: target ${fmtShape(target.shape)} does not match logits ${fmtShape(logits.shape)}`);
  const eps = opts.labelSmoothing ?? 0;
  const y = eps > 0 ? soft.mul(1 - eps).add(eps / k) : soft;
  return logits.logSoftmax(-1).mul(y).sum(-1).mean().neg();
}
