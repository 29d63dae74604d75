/**
 * ONNX Runtime (onnxruntime-node) sessions with explicit thread settings.
 */
import * as ort from 'onnxruntime-node';
import { RuntimeFailure, fmtShape } from '../../errors.js';
import { type DType, NDArray } from '../../ir/ndarray.js';
import { debug } from '../debug.js';
import { nchwcProbeModel } from '../onnx/model.js';
import type { NativeOrtSession } from './native.js';

export interface OrtOptions {
  /** intra-op threads (default: 2, this project's reference machine; 0 lets ORT decide). */
  threads?: number;
  /** ORT graph optimisation level (default 'all'). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Let idle intra-op threads spin between parallel sections (ORT's default,
   * true). Turn it off when several sessions take turns in one process: a
   * session's spinning workers otherwise steal the cores the next one runs on.
   */
  spinWait?: boolean;
  /**
   * ORT's memory-pattern planning (its default, true): one block per run laid out from the previous run's
   * allocations. Train steps turn it off: at batch 8 the process then peaked at 2.0 instead of 3.2 GB (UniFormer-S),
   * 1.2 instead of 2.0 GB (CeiT-T) and 1.0 instead of 1.6 GB (MixFormer-B0), and UniFormer-S's and MixFormer-B0's
   * steps ran about 8% faster (three alternating runs each; CeiT-T's the same); inference measured the same either way.
   */
  memoryPattern?: boolean;
  /**
   * volution's kernel library (`kernelsFor`), for graphs emitted with
   * `kernels`. The session then runs through ONNX Runtime's C API
   * (`NativeOrtSession`): onnxruntime-node's binding cannot register one.
   */
  kernelLibrary?: string;
}

export const DEFAULT_THREADS = 2;

const ORT_TYPE: Record<DType, ort.Tensor.Type> = { float32: 'float32', float64: 'float64', int64: 'int64', bool: 'bool' };

export function toOrt(a: NDArray): ort.Tensor {
  return new ort.Tensor(ORT_TYPE[a.dtype], a.data as never, [...a.shape]);
}

export function fromOrt(t: ort.Tensor): NDArray {
  const dtype = (Object.entries(ORT_TYPE).find(([, v]) => v === t.type)?.[0] ?? 'float32') as DType;
  return new NDArray(dtype, [...t.dims], t.data as never);
}

/** A loaded ONNX model. */
export class OrtSession {
  private constructor(
    private readonly session: { node: ort.InferenceSession } | { native: NativeOrtSession },
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  static async create(model: Uint8Array, opts: OrtOptions = {}): Promise<OrtSession> {
    const t0 = performance.now();
    if (opts.kernelLibrary) {
      const { NativeOrtSession } = await import('./native.js');
      const native = NativeOrtSession.create(model, opts.kernelLibrary, opts);
      debug(1, `ort: C-API session with volution's kernels created in ${(performance.now() - t0).toFixed(0)} ms`);
      return new OrtSession({ native }, native.inputNames, native.outputNames);
    }
    let s: ort.InferenceSession;
    try {
      s = await ort.InferenceSession.create(model, {
        intraOpNumThreads: opts.threads ?? DEFAULT_THREADS,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        enableMemPattern: opts.memoryPattern ?? true,
        graphOptimizationLevel: opts.optimization ?? 'all',
        ...(opts.spinWait === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
        // VOLUTION_PROFILE=<prefix>: ONNX Runtime writes a per-node timing profile (JSON) for each session
        ...(process.env.VOLUTION_PROFILE ? { enableProfiling: true, profileFilePrefix: process.env.VOLUTION_PROFILE } : {}),
      });
    } catch (err) {
      throw new RuntimeFailure(`ONNX Runtime could not load the model: ${(err as Error).message}`, { cause: err });
    }
    debug(1, `ort: session created in ${(performance.now() - t0).toFixed(0)} ms (${(model.length / 1e6).toFixed(1)} MB, ${opts.threads ?? DEFAULT_THREADS} threads)`);
    return new OrtSession({ node: s }, s.inputNames, s.outputNames);
  }

  /** Runs with feeds by input name; returns outputs by name. */
  async run(feeds: Readonly<Record<string, NDArray>>): Promise<Record<string, NDArray>> {
    for (const name of this.inputNames) if (!feeds[name]) throw new RuntimeFailure(`ONNX Runtime: missing input '${name}'`);
    const t0 = performance.now();
    try {
      if ('native' in this.session) return this.session.native.run(feeds);
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const name of this.inputNames) ortFeeds[name] = toOrt(feeds[name]!);
      const out = await this.session.node.run(ortFeeds);
      debug(2, `ort: run in ${(performance.now() - t0).toFixed(1)} ms`);
      const res: Record<string, NDArray> = {};
      for (const name of this.outputNames) res[name] = fromOrt(out[name]!);
      return res;
    } catch (err) {
      const shapes = Object.entries(feeds).map(([k, v]) => `${k}${fmtShape(v.shape)}`).join(', ');
      throw new RuntimeFailure(`ONNX Runtime failed (${shapes}): ${(err as Error).message}`, { cause: err });
    }
  }

  async release(): Promise<void> {
    if ('native' in this.session) this.session.native.release();
    else await this.session.node.release();
  }
}

let nchwcBlock: Promise<number> | undefined;

/**
 * ONNX Runtime's NCHWc channel-block size on this machine (16 with AVX-512,
 * 8 with AVX2), or 0 where its blocked-layout kernels are missing: asked of
 * ONNX Runtime itself once per process, with a one-node model.
 */
export function nchwcBlockSize(): Promise<number> {
  nchwcBlock ??= (async () => {
    try {
      const probe = await OrtSession.create(nchwcProbeModel(), { threads: 1 });
      const { y } = await probe.run({ x: NDArray.float32([1, 4, 1, 1]) });
      await probe.release();
      const block = y!.shape[1]!;
      return block > 4 ? block : 0;
    } catch {
      return 0;
    }
  })();
  return nchwcBlock;
}
