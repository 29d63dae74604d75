import { TraceError } from '../errors.js';
import type { Graph, Value } from '../ir/graph.js';
import type { NDArray } from '../ir/ndarray.js';
import { Tensor, wrap } from './tensor.js';
import { type InputSpec, type Liftable, Trace, runInTrace } from './trace.js';

export type TensorFn = (...inputs: Tensor[]) => Tensor | readonly Tensor[];

export interface Traced {
  readonly graph: Graph;
  /** Graph inputs made for the function's arguments, in order. */
  readonly inputs: readonly Value[];
  /** Parameters the function used, with their graph inputs. */
  readonly params: readonly (readonly [Liftable, Value])[];
  /** How many of graph.outputs the function returned (the rest are buffer updates). */
  readonly numOutputs: number;
  /** Whether the function returned a single tensor (vs an array). */
  readonly single: boolean;
  /** Buffers the function assigned (train-mode running stats), with their new values. */
  readonly updates: readonly (readonly [Liftable, Value])[];
  /** Graph inputs to feed with uniform [0, 1) noise on every call. */
  readonly randoms: readonly Value[];
  /** Module inputs/outputs by `path:in.i` / `path:out`, when traced with activations. */
  readonly activations?: ReadonlyMap<string, Value>;
}

/**
 * Traces `fn` on symbolic inputs of the given types and returns its graph.
 * Parameters it touches become graph inputs of role 'param'.
 */
export function trace(fn: TensorFn, specs: readonly InputSpec[], opts: { activations?: boolean } = {}): Traced {
  const t = new Trace();
  if (opts.activations) t.activations = new Map();
  const inputs = specs.map((s, i) => t.graph.addInput(s, s.name ?? `input_${i}`));
  const result = runInTrace(t, () => {
    const out = fn(...inputs.map(wrap));
    const outs = out instanceof Tensor ? [out] : [...out];
    if (outs.length === 0) throw new TraceError('the traced function returned no tensors');
    // Buffer updates follow the function's own outputs.
    t.graph.outputs = outs.map((o) => {
      if (!(o instanceof Tensor)) throw new TraceError(`the traced function must return tensors, got ${typeof o}`);
      return o.value;
    });
    t.graph.outputs.push(...t.stateUpdates().map(([, v]) => v));
    return out instanceof Tensor;
  });
  const updates = t.stateUpdates();
  return { graph: t.graph, inputs, params: t.liftedParams(), numOutputs: t.graph.outputs.length - updates.length, single: result, updates, randoms: t.randomInputs(), activations: t.activations };
}

/** The parameter values of a trace, keyed by graph input (for emission and execution). */
export function paramValues(traced: Traced): Map<Value, NDArray> {
  return new Map(traced.params.map(([p, v]) => [v, p.data]));
}
