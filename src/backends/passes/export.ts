/**
 * Inference export: trace a one-input function in eval mode, fold
 * BatchNorms and depthwise-conv residuals into convolutions, put map ↔ token
 * transposes where ONNX Runtime fuses them, optionally free the batch dimension, and
 * emit a standalone ONNX model (weights as initializers). Also the check
 * that an exported file computes what the traced function computes.
 */
import { ConfigError, fmtShape } from '../../errors.js';
import type { Value } from '../../ir/graph.js';
import type { NDArray } from '../../ir/ndarray.js';
import { type TensorFn, paramValues, trace } from '../../tensor/function.js';
import { toOnnx } from '../onnx/model.js';
import { kernelLibrary, kernelsFor } from '../ort/kernels.js';
import { OrtSession, type OrtOptions } from '../ort/session.js';
import { dynamicBatchTargets } from './dynamic_batch.js';
import { foldBatchNorm } from './fold_bn.js';
import { foldConvResidual } from './fold_residual.js';
import { fuseAttention } from './fuse_attention.js';
import type { ParamGraph } from './rewrite.js';
import { tokenLayout } from './token_layout.js';

export interface InferenceExportOptions {
  /**
   * 'dynamic' (default) for a symbolic `batch` dimension, or a fixed batch size. Dynamic is also the
   * faster graph: with concrete shapes ORT rewrites each rank-3 MatMul + bias Add into
   * Reshape → Gemm → Reshape and loses its BiasGelu fusion (10–17% slower over whole transformers).
   */
  batch?: number | 'dynamic';
  /**
   * Fold eval BatchNorms into adjacent convolutions and `x + dwconv(x)` residuals into the depthwise conv (default
   * true). False keeps the graph as traced: what `volution export` checks the folded graph against.
   */
  fold?: boolean;
  /** ONNX name of the input (default 'input'). */
  inputName?: string;
  /** ONNX name of the output (default 'logits'). */
  outputName?: string;
  docString?: string;
  metadata?: Readonly<Record<string, string>>;
  /**
   * Allow ONNX Runtime's contrib ops (default false: a portable file; see `EmitOptions.contribOps`). With them,
   * self-attention blocks are fused into its `Attention` kernel (`fuseAttention`).
   */
  contribOps?: boolean;
  /** Let ops with a fused kernel of volution's use it (see `EmitOptions.kernels`): for a session that loads the library. */
  kernels?: boolean;
}

export interface InferenceExport {
  readonly bytes: Uint8Array;
  /** The emitted graph and its weights (after folding). */
  readonly graph: ParamGraph;
  readonly folded: FoldCounts;
}

export interface FoldCounts {
  readonly batchNorms: number;
  readonly residuals: number;
}

/** Batch sizes traced for a dynamic batch: both above 1, as batch 1 hides some ops (a no-op expand). */
const DYNAMIC_TRACE_BATCHES = [2, 3] as const;

/**
 * Exports `fn` (one float32 input, `sampleShape` per example, and one
 * output) as an ONNX model. The function must be deterministic and leave
 * buffers alone: put modules in eval mode first.
 */
export function exportInference(fn: TensorFn, sampleShape: readonly number[], opts: InferenceExportOptions = {}): InferenceExport {
  const inputName = opts.inputName ?? 'input';
  const batch = opts.batch ?? 'dynamic';
  if (batch !== 'dynamic' && (!Number.isInteger(batch) || batch < 1)) throw new ConfigError(`batch must be a positive integer or 'dynamic', got ${String(batch)}`);
  const traceAt = (n: number) => {
    const t = trace(fn, [{ dtype: 'float32', shape: [n, ...sampleShape], name: inputName }]);
    if (t.updates.length || t.randoms.length) throw new ConfigError('export needs a model in eval mode (it updated buffers or drew dropout noise); call model.eval() first');
    if (t.numOutputs !== 1) throw new ConfigError(`export expects a function with one output, got ${t.numOutputs}`);
    const source: ParamGraph = { graph: t.graph, params: paramValues(t) };
    const fold = opts.fold !== false;
    const bn = fold ? foldBatchNorm(source) : { ...source, folded: 0 };
    const residual = fold ? foldConvResidual(bn) : { ...bn, folded: 0 };
    const laidOut = tokenLayout(residual);
    const { graph, params } = opts.contribOps ? fuseAttention(laidOut) : laidOut;
    return { graph, params, folded: { batchNorms: bn.folded, residuals: residual.folded } };
  };
  const common = { params: 'initializers' as const, outputNames: [opts.outputName ?? 'logits'], docString: opts.docString, metadata: opts.metadata, contribOps: opts.contribOps ?? false, kernels: opts.kernels };
  if (batch !== 'dynamic') {
    const g = traceAt(batch);
    return { bytes: toOnnx(g.graph, { ...common, paramValues: g.params }), graph: g, folded: g.folded };
  }
  const [ba, bb] = DYNAMIC_TRACE_BATCHES;
  const a = traceAt(ba);
  const b = traceAt(bb);
  const shapeTargets = dynamicBatchTargets(a.graph, b.graph, ba, bb);
  const symbolic = new Map<Value, ReadonlyMap<number, string>>();
  const batchDim = new Map([[0, 'batch']]);
  symbolic.set(b.graph.inputs[0]!, batchDim);
  b.graph.outputs.forEach((v, i) => {
    if (v.shape[0] !== a.graph.outputs[i]!.shape[0]) symbolic.set(v, batchDim);
  });
  const bytes = toOnnx(b.graph, { ...common, paramValues: b.params, shapeTargets, symbolicDims: symbolic });
  return { bytes, graph: b, folded: b.folded };
}

/** max |a − b| / max |b|: the relative error of `a` against the reference `b`. */
export function maxRelativeDifference(a: NDArray, b: NDArray): number {
  if (a.shape.join() !== b.shape.join()) throw new ConfigError(`cannot compare outputs of shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.size; i++) {
    diff = Math.max(diff, Math.abs(a.get(i) - b.get(i)));
    scale = Math.max(scale, Math.abs(b.get(i)));
  }
  return scale === 0 ? diff : diff / scale;
}

/**
 * Runs an exported model in ONNX Runtime on each input and returns the
 * largest relative difference from `reference(input)`.
 */
export async function checkExport(bytes: Uint8Array, inputs: readonly NDArray[], reference: (x: NDArray) => Promise<NDArray>, opts: OrtOptions = {}): Promise<number> {
  const session = await OrtSession.create(bytes, opts);
  try {
    let worst = 0;
    for (const x of inputs) {
      const out = await session.run({ [session.inputNames[0]!]: x });
      worst = Math.max(worst, maxRelativeDifference(out[session.outputNames[0]!]!, await reference(x)));
    }
    return worst;
  } finally {
    await session.release();
  }
}

/** An exported inference graph loaded in ONNX Runtime. */
export interface InferenceRunner {
  /** Runs one batch; returns the output. */
  run(x: NDArray): Promise<NDArray>;
  release(): Promise<void>;
  readonly folded: FoldCounts;
}

/**
 * Exports `fn` for inference (folded, with attention fused into ONNX
 * Runtime's contrib kernel) and opens it in ONNX Runtime; with the default
 * dynamic batch one session serves every size.
 */
export async function createInferenceRunner(fn: TensorFn, sampleShape: readonly number[], opts: OrtOptions & Pick<InferenceExportOptions, 'batch' | 'fold'> = {}): Promise<InferenceRunner> {
  // Never written to a file: ORT's contrib kernels and volution's own are fair game.
  const library = kernelLibrary();
  const exported = exportInference(fn, sampleShape, { batch: opts.batch, fold: opts.fold, contribOps: true, kernels: library !== undefined });
  const session = await OrtSession.create(exported.bytes, { ...opts, kernelLibrary: kernelsFor(exported.graph.graph) });
  const [input] = session.inputNames;
  const [output] = session.outputNames;
  return {
    run: async (x) => (await session.run({ [input!]: x }))[output!]!,
    release: () => session.release(),
    folded: exported.folded,
  };
}
