/**
 * compile(fn): a function of tensors → an async function of NDArrays that
 * runs on ONNX Runtime (or the reference interpreter). Traces once per
 * distinct input signature (shapes and dtypes) and caches the session.
 * compileSteps(step): several calls of a step that updates state, in one
 * ONNX Runtime run.
 */
import { writeFileSync, renameSync } from 'node:fs';
import { ShapeError, TraceError, fmtShape } from '../errors.js';
import type { Graph, Value } from '../ir/graph.js';
import { NDArray, allocate, numel } from '../ir/ndarray.js';
import { type TensorFn, type Traced, paramValues, trace } from '../tensor/function.js';
import type { InputSpec } from '../tensor/trace.js';
import { debug } from './debug.js';
import { type EmitOptions, onnxInputNames, toOnnx, toOnnxLoop } from './onnx/model.js';
import { kernelsFor } from './ort/kernels.js';
import { fuseAttention } from './passes/fuse_attention.js';
import { OrtSession, type OrtOptions, nchwcBlockSize } from './ort/session.js';
import { fromRef, interpret } from './reference/interpreter.js';
import { Rng } from '../rng.js';

function uniform(rng: Rng, shape: readonly number[]): NDArray {
  const a = NDArray.float32(shape);
  for (let i = 0; i < a.size; i++) a.data[i] = rng.uniform();
  return a;
}

export type Backend = 'ort' | 'reference';

export interface CompileOptions extends OrtOptions {
  /** 'ort' (default): ONNX Runtime, float32. 'reference': the float64 interpreter (slow; for checks). */
  backend?: Backend;
  /**
   * 'initializers' (default) bakes parameter values into the model, which
   * lets ONNX Runtime pre-pack weights; the session is rebuilt when a
   * parameter's `data` is replaced. 'inputs' feeds them on every call.
   */
  params?: 'initializers' | 'inputs';
  /** Seed of the generator that feeds dropout/drop-path noise (default 0). */
  seed?: number;
  /**
   * The noise generator itself (overrides `seed`): a caller that checkpoints
   * keeps it and saves `rng.state`, so a resumed run draws the same noise.
   */
  rng?: Rng;
}

export type CompiledFn = ((...inputs: NDArray[]) => Promise<NDArray[]>) & {
  /** The traced graph for a given input signature (traced on demand). */
  traced(...inputs: NDArray[]): Traced;
  /** Frees every cached session. */
  release(): Promise<void>;
};

interface Entry {
  traced: Traced;
  /** Parameter data objects baked into the session, to detect replaced weights. */
  baked: readonly NDArray[];
  session?: Promise<OrtSession>;
  /** The ONNX names of the traced inputs, randoms and parameters, in the graph the session runs. */
  names?: Map<Value, string>;
}

/**
 * The graph a session runs, its parameter values and the ONNX names of the
 * traced graph's inputs in it. With baked weights and no random inputs, it
 * runs as inference does: self-attention fused into ONNX Runtime's contrib
 * `Attention` kernel (`fuseAttention`), whose rewrite keeps the inputs first
 * and in order.
 */
function sessionGraph(traced: Traced, mode: 'initializers' | 'inputs'): { graph: Graph; params: ReadonlyMap<Value, NDArray>; names: Map<Value, string> } {
  const source = { graph: traced.graph, params: paramValues(traced) };
  const fused = mode === 'initializers' && !traced.randoms.length ? fuseAttention(source) : undefined;
  if (!fused?.fused) return { ...source, names: onnxInputNames(traced.graph) };
  debug(1, `compile: ${fused.fused} self-attention blocks fused into ONNX Runtime's Attention kernel`);
  const names = onnxInputNames(fused.graph);
  return { graph: fused.graph, params: fused.params, names: new Map(traced.inputs.map((v, i) => [v, names.get(fused.graph.inputs[i]!)!])) };
}

function signature(inputs: readonly NDArray[]): string {
  return inputs.map((a) => `${a.dtype}${fmtShape(a.shape)}`).join(';');
}

export function specsOf(inputs: readonly NDArray[]): InputSpec[] {
  return inputs.map((a, i) => ({ dtype: a.dtype, shape: a.shape, name: `input_${i}` }));
}

export function compile(fn: TensorFn, opts: CompileOptions = {}): CompiledFn {
  const cache = new Map<string, Entry>();
  const mode = opts.params ?? 'initializers';
  const rng = opts.rng ?? new Rng(opts.seed ?? 0);

  const entryFor = (inputs: readonly NDArray[]): Entry => {
    const key = signature(inputs);
    let e = cache.get(key);
    // Only baked weights go stale: a graph that takes its parameters as inputs reads them on every call.
    const stale = e && mode === 'initializers' && !e.traced.updates.length && e.traced.params.some(([p], i) => p.data !== e!.baked[i]);
    if (!e || stale) {
      if (e?.session) void e.session.then((s) => s.release());
      const t0 = performance.now();
      const traced = trace(fn, specsOf(inputs));
      debug(1, () => `trace: ${traced.graph.nodes.length} nodes, ${traced.params.length} parameters for ${key} in ${(performance.now() - t0).toFixed(0)} ms`);
      debug(3, () => traced.graph.toString());
      e = { traced, baked: traced.params.map(([p]) => p.data) };
      cache.set(key, e);
    }
    return e;
  };

  const run = async (...inputs: NDArray[]): Promise<NDArray[]> => {
    const e = entryFor(inputs);
    const { traced } = e;
    const noise = traced.randoms.map((v) => uniform(rng, v.shape));
    let outs: NDArray[];
    if ((opts.backend ?? 'ort') === 'reference') {
      const feeds = new Map<Value, NDArray>(paramValues(traced));
      traced.inputs.forEach((v, i) => feeds.set(v, inputs[i]!));
      traced.randoms.forEach((v, i) => feeds.set(v, noise[i]!));
      // float outputs come back as float64: the interpreter's precision
      outs = interpret(traced.graph, feeds).map((r, i) => fromRef(r, traced.graph.outputs[i]!.dtype === 'float32' ? 'float64' : traced.graph.outputs[i]!.dtype));
    } else {
      // A graph that updates buffers takes its parameters as inputs: baked ones would go stale after every call.
      const entryMode = traced.updates.length ? 'inputs' : mode;
      if (!e.session) {
        // An in-process session: ORT's contrib kernels are there to use (exportOnnx writes standard ONNX only).
        const { graph, params, names } = sessionGraph(traced, entryMode);
        const kernels = kernelsFor(graph);
        e.names = names;
        e.session = nchwcBlockSize().then((nchwcBlock) =>
          OrtSession.create(toOnnx(graph, { params: entryMode, paramValues: params, contribOps: true, nchwcBlock, kernels: kernels !== undefined }), { ...opts, kernelLibrary: kernels }),
        );
      }
      const session = await e.session;
      const names = e.names!;
      const feeds: Record<string, NDArray> = {};
      traced.inputs.forEach((v, i) => (feeds[names.get(v)!] = inputs[i]!));
      traced.randoms.forEach((v, i) => (feeds[names.get(v)!] = noise[i]!));
      if (entryMode === 'inputs') for (const [p, v] of traced.params) feeds[names.get(v)!] = p.data;
      const out = await session.run(feeds);
      outs = traced.graph.outputs.map((_, i) => out[`output_${i}`]!);
    }
    storeUpdates(traced, outs);
    return outs.slice(0, traced.numOutputs);
  };

  return Object.assign(run, {
    traced: (...inputs: NDArray[]) => entryFor(inputs).traced,
    release: async () => {
      for (const e of cache.values()) if (e.session) await (await e.session).release();
      cache.clear();
    },
  });
}

/** Stores a run's buffer updates (outputs after the returned ones) back in each buffer's shape, like PyTorch's in-place updates. */
function storeUpdates(traced: Traced, outs: readonly NDArray[]): void {
  traced.updates.forEach(([p], i) => {
    const v = outs[traced.numOutputs + i]!.reshape(p.data.shape);
    (p as { data: NDArray }).data = v.dtype === p.data.dtype ? v : v.astype(p.data.dtype);
  });
}

export type SteppedFn = ((steps: readonly (readonly NDArray[])[]) => Promise<NDArray[][]>) & {
  /** One step's traced graph for a given input signature (traced on demand). */
  traced(...inputs: NDArray[]): Traced;
  /** Frees every cached session. */
  release(): Promise<void>;
};

/**
 * compileSteps(step): runs several calls of `step` (a train step, say) in ONE
 * ONNX Runtime run, each call reading the buffers the one before assigned.
 * The graph is one step, wrapped in an ONNX `Loop`: onnxruntime-node copies
 * every output into a new JavaScript array, the assigned buffers included,
 * and a run of n steps copies them once instead of n times, while ONNX
 * Runtime plans memory for one step, and one session serves any n. Called
 * with the steps' inputs (the same signature for every step); returns each
 * step's outputs. Parameters are always fed as inputs; every buffer a step
 * assigns must be one it reads. The reference backend runs the steps one by one.
 */
export function compileSteps(fn: TensorFn, opts: CompileOptions = {}): SteppedFn {
  const rng = opts.rng ?? new Rng(opts.seed ?? 0);
  const step = compile(fn, { ...opts, rng, params: 'inputs' });
  const sessions = new Map<string, { session: Promise<OrtSession>; names: Map<Value, string> }>();

  const sessionFor = (traced: Traced, key: string) => {
    let s = sessions.get(key);
    if (!s) {
      const inputOf = new Map(traced.params);
      const carried = traced.updates.map(([p], i): [Value, number] => {
        const v = inputOf.get(p);
        if (!v) throw new TraceError(`compileSteps: the step assigns '${p.name}' without reading it; a step's state must be read before it is assigned`);
        return [v, traced.numOutputs + i];
      });
      const perStep = [...traced.inputs, ...traced.randoms];
      const kernels = kernelsFor(traced.graph);
      const model = nchwcBlockSize().then((nchwcBlock) => toOnnxLoop(traced.graph, { params: 'inputs', contribOps: true, nchwcBlock, kernels: kernels !== undefined }, { perStep, carried, perStepOutputs: traced.numOutputs }));
      s = { session: model.then((bytes) => OrtSession.create(bytes, { ...opts, kernelLibrary: kernels })), names: onnxInputNames(traced.graph) };
      sessions.set(key, s);
    }
    return s;
  };

  const run = async (steps: readonly (readonly NDArray[])[]): Promise<NDArray[][]> => {
    if (!steps.length) return [];
    const key = signature(steps[0]!);
    const other = steps.findIndex((s) => signature(s) !== key);
    if (other >= 0) throw new ShapeError(`compileSteps: step ${other + 1} takes (${signature(steps[other]!)}) where step 1 takes (${key}); every step of a run needs the same input shapes`);
    if ((opts.backend ?? 'ort') === 'reference') {
      const outs: NDArray[][] = [];
      for (const s of steps) outs.push(await step(...s));
      return outs;
    }
    const traced = step.traced(...steps[0]!);
    const { session, names } = sessionFor(traced, key);
    // The noise is drawn step by step, as single calls would draw it.
    const noise = steps.map(() => traced.randoms.map((v) => uniform(rng, v.shape)));
    const feeds: Record<string, NDArray> = {};
    traced.inputs.forEach((v, i) => (feeds[names.get(v)!] = stack(steps.map((s) => s[i]!))));
    traced.randoms.forEach((v, i) => (feeds[names.get(v)!] = stack(noise.map((n) => n[i]!))));
    for (const [p, v] of traced.params) feeds[names.get(v)!] = p.data;
    const out = await (await session).run(feeds);
    const outs = traced.graph.outputs.map((_, i) => out[`output_${i}`]!);
    storeUpdates(traced, outs);
    return steps.map((_, k) => outs.slice(0, traced.numOutputs).map((o) => unstack(o, k)));
  };

  return Object.assign(run, {
    traced: (...inputs: NDArray[]) => step.traced(...inputs),
    release: async () => {
      for (const s of sessions.values()) await (await s.session).release();
      sessions.clear();
      await step.release();
    },
  });
}

/** Arrays of one shape, stacked along a new first axis. */
function stack(arrays: readonly NDArray[]): NDArray {
  const [first] = arrays;
  const data = allocate(first!.dtype, first!.size * arrays.length);
  arrays.forEach((a, k) => (data as { set(d: ArrayLike<unknown>, at: number): void }).set(a.data, k * a.size));
  return new NDArray(first!.dtype, [arrays.length, ...first!.shape], data);
}

/** The k-th array along the first axis (a view). */
function unstack(a: NDArray, k: number): NDArray {
  const shape = a.shape.slice(1);
  const n = numel(shape);
  return new NDArray(a.dtype, shape, a.data.subarray(k * n, (k + 1) * n));
}

/**
 * Traces `fn` on example inputs and returns a standalone ONNX model (weights
 * as initializers, standard ONNX operators only). With `path`, also writes it
 * atomically (temp + rename).
 */
export function exportOnnx(fn: TensorFn, exampleInputs: readonly NDArray[], opts: { path?: string; inputNames?: readonly string[]; outputNames?: readonly string[] } & Pick<EmitOptions, 'docString' | 'metadata'> = {}): Uint8Array {
  const specs = specsOf(exampleInputs).map((s, i) => ({ ...s, name: opts.inputNames?.[i] ?? s.name }));
  const traced = trace(fn, specs);
  const bytes = toOnnx(traced.graph, { params: 'initializers', paramValues: paramValues(traced), outputNames: opts.outputNames, docString: opts.docString, metadata: opts.metadata });
  if (opts.path) {
    const tmp = `${opts.path}.tmp-${process.pid}`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, opts.path);
  }
  return bytes;
}
