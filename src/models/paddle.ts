/** PaddlePaddle checkpoint conventions, shared by the families with Paddle weights (MixFormer, UniFormer's PaddleClas copies). */
import { NDArray } from '../ir/ndarray.js';

/** A 2-D array transposed ([in, out] → [out, in]). */
function transpose2d(a: NDArray): NDArray {
  const [rows, cols] = a.shape as [number, number];
  const out = NDArray.zeros(a.dtype, [cols, rows]);
  const src = a.data as ArrayLike<number | bigint>;
  const dst = out.data as unknown as (number | bigint)[];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c]!;
  return out;
}

/**
 * PaddleClas `.pdparams` tensors → a PyTorch-style state dict (models/README
 * §4): Linear weights [in, out] → [out, in] (in the Paddle families every 2-D
 * `*.weight` is a Linear; `relative_position_bias_table` has the same layout
 * in both frameworks and is kept), BatchNorm `_mean`/`_variance` →
 * `running_mean`/`running_var` plus the `num_batches_tracked` (0) that Paddle
 * does not store. `relative_position_index` is kept.
 */
export function convertPaddleStateDict(paddleTensors: ReadonlyMap<string, NDArray>): Map<string, NDArray> {
  const out = new Map<string, NDArray>();
  for (const [key, value] of paddleTensors) {
    if (key.endsWith('._mean')) {
      out.set(`${key.slice(0, -'_mean'.length)}running_mean`, value);
    } else if (key.endsWith('._variance')) {
      const prefix = key.slice(0, -'_variance'.length);
      out.set(`${prefix}running_var`, value);
      out.set(`${prefix}num_batches_tracked`, NDArray.int64([], [0]));
    } else if (key.endsWith('.weight') && value.rank === 2) {
      out.set(key, transpose2d(value));
    } else {
      out.set(key, value);
    }
  }
  return out;
}

/** Paddle checkpoints are recognised by their BatchNorm `_mean` keys; others pass through. */
export function fromPaddleIfNeeded(sd: ReadonlyMap<string, NDArray>): Map<string, NDArray> {
  return [...sd.keys()].some((k) => k.endsWith('._mean')) ? convertPaddleStateDict(sd) : new Map(sd);
}
