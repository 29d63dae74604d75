/**
 * One-shot execution of a module with optional capture of intermediate
 * activations (`path:in.i`, `path:out`, the fixtures' naming), on ONNX
 * Runtime or the reference interpreter.
 */
import { toOnnx } from '../backends/onnx/model.js';
import { kernelsFor } from '../backends/ort/kernels.js';
import { OrtSession, type OrtOptions } from '../backends/ort/session.js';
import { fromRef, interpret } from '../backends/reference/interpreter.js';
import { ConfigError } from '../errors.js';
import type { Value } from '../ir/graph.js';
import type { NDArray } from '../ir/ndarray.js';
import { paramValues, trace } from '../tensor/function.js';
import type { Module } from './module.js';

export interface RunOptions extends OrtOptions {
  /** Activation keys to return, or true for all recorded ones. */
  activations?: readonly string[] | boolean;
  backend?: 'ort' | 'reference';
}

export interface RunResult {
  output: NDArray;
  activations: Map<string, NDArray>;
}

export async function runModule(model: Module, input: NDArray, opts: RunOptions = {}): Promise<RunResult> {
  const want = opts.activations;
  const traced = trace((x) => model.call(x), [{ dtype: input.dtype, shape: input.shape, name: 'input' }], { activations: !!want });
  const acts = traced.activations ?? new Map<string, Value>();
  const keys = want === true ? [...acts.keys()] : want ? [...want] : [];
  const missing = keys.filter((k) => !acts.has(k));
  if (missing.length) throw new ConfigError(`no recorded activation named ${missing.join(', ')} (recorded: ${[...acts.keys()].slice(0, 30).join(', ')}…)`);
  const graph = traced.graph;
  graph.outputs = [graph.outputs[0]!, ...keys.map((k) => acts.get(k)!)];
  let outs: NDArray[];
  if (opts.backend === 'reference') {
    const feeds = new Map<Value, NDArray>(paramValues(traced));
    feeds.set(traced.inputs[0]!, input);
    outs = interpret(graph, feeds).map((r) => fromRef(r, 'float64'));
  } else {
    const kernels = kernelsFor(graph);
    const session = await OrtSession.create(toOnnx(graph, { paramValues: paramValues(traced), contribOps: true, kernels: kernels !== undefined }), { ...opts, kernelLibrary: kernels });
    try {
      const res = await session.run({ input });
      outs = graph.outputs.map((_, i) => res[`output_${i}`]!);
    } finally {
      await session.release();
    }
  }
  return { output: outs[0]!, activations: new Map(keys.map((k, i) => [k, outs[i + 1]!])) };
}
