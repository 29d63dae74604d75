import type { DType } from '../../ir/ndarray.js';

/** onnx.TensorProto.DataType codes. */
export const ONNX_DTYPE_CODE: Readonly<Record<DType, number>> = { float32: 1, int64: 7, bool: 9, float64: 11 };
