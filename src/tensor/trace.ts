/**
 * Tracing: running ordinary TypeScript over symbolic tensors records a Graph.
 *
 * A trace is explicit (`trace(fn, inputs)`), and only active while `fn` runs;
 * ops called outside any trace throw a TraceError. Parameters (concrete
 * arrays owned by modules) are lifted into the trace the first time an op
 * uses them, becoming graph inputs of role 'param'.
 */
import { TraceError } from '../errors.js';
import { Graph, type Value, type ValueType } from '../ir/graph.js';
import type { NDArray } from '../ir/ndarray.js';
import type { AttrsOf, OpName } from '../ir/ops.js';

/** Anything whose data can be lifted into a trace as a graph input. */
export interface Liftable {
  readonly data: NDArray;
  /** Name used for the graph input (a state-dict key when the module system named it). */
  readonly name: string;
}

export class Trace {
  readonly graph = new Graph();
  private readonly scopes: string[] = [];
  private readonly lifted = new Map<Liftable, Value>();

  /** The current module path, e.g. `blocks.0.attn`. */
  get scope(): string {
    return this.scopes.join('.');
  }

  /** Runs `fn` with `name` pushed on the module path (used by `Module.call`). */
  withScope<T>(name: string, fn: () => T): T {
    if (!name) return fn();
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  emit<K extends OpName>(op: K, inputs: readonly Value[], attrs: AttrsOf<K>): Value[] {
    return this.graph.addNode(op, inputs, attrs, this.scope);
  }

  lift(p: Liftable): Value {
    let v = this.lifted.get(p);
    if (!v) {
      v = this.graph.addInput({ dtype: p.data.dtype, shape: p.data.shape }, p.name, 'param');
      this.lifted.set(p, v);
    }
    return v;
  }

  /** The parameters this trace lifted, with their graph inputs, in order of first use. */
  liftedParams(): [Liftable, Value][] {
    return [...this.lifted.entries()];
  }

  /** The graph value of a lifted liftable, if this trace lifted it. */
  liftedValue(p: Liftable): Value | undefined {
    return this.lifted.get(p);
  }
}

const active: Trace[] = [];

export function activeTrace(): Trace {
  const t = active[active.length - 1];
  if (!t) throw new TraceError('no active trace: tensor ops run inside trace(), compile() or a module call under them; build inputs with the function arguments trace() passes you');
  return t;
}

export function isTracing(): boolean {
  return active.length > 0;
}

/** Runs `fn` with `t` as the active trace. */
export function runInTrace<T>(t: Trace, fn: () => T): T {
  active.push(t);
  try {
    return fn();
  } finally {
    active.pop();
  }
}

export type InputSpec = ValueType & { readonly name?: string };
