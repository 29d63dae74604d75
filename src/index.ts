/**
 * volution: hybrid convolution + self-attention vision models in
 * TypeScript. The public API: tensors and tracing, autodiff, compile/export,
 * modules, models, checkpoints.
 */
export * from './errors.js';
export { NDArray, type DType } from './ir/ndarray.js';
export type { Graph, Value, ValueType } from './ir/graph.js';
export {
  Tensor,
  Parameter,
  constant,
  full,
  zeros,
  arange,
  concat,
  stack,
  where,
  oneHot,
  conv2d,
  convTranspose2d,
  maxPool2d,
  avgPool2d,
  unfold,
  fold,
  layerNorm,
  batchNorm,
  batchNormTrain,
  type TensorLike,
} from './tensor/tensor.js';
export { trace, type Traced, type TensorFn } from './tensor/function.js';
export { grad } from './autodiff/grad.js';
export { compile, exportOnnx, type CompileOptions, type CompiledFn } from './backends/compile.js';
export { toOnnx } from './backends/onnx/model.js';
export { createInferenceRunner, exportInference, type FoldCounts, type InferenceExport, type InferenceExportOptions, type InferenceRunner } from './backends/passes/export.js';
export { OrtSession, type OrtOptions } from './backends/ort/session.js';
export { Rng } from './rng.js';
export * as nn from './nn/index.js';
export { Module } from './nn/module.js';
export { runModule, type RunOptions, type RunResult } from './nn/run.js';
export * from './models/index.js';
export * from './io/index.js';
export * from './train/index.js';
export * from './io/model_dir.js';
export { loadImage, loadImages, imagenetClassNames, type Preprocessing } from './io/image.js';
