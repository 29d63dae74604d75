/**
 * Tracing: running ordinary TypeScript over symbolic tensors records a Graph.
 *
 * A trace is explicit (`trace(fn, inputs)`), and only active while `fn` runs;
 * ops called outside any trace throw a TraceError. Parameters (concrete
 * arrays owned by modules) are lifted into the trace the first time an op
 * uses them, becoming graph inputs of role 'param'.
 */
import { ShapeError, TraceError, fmtShape } from '../errors.js';
import { Graph, type Value, type ValueType } from '../ir/graph.js';
import { type NDArray, numel, sameShape } from '../ir/ndarray.js';
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
  private readonly updates = new Map<Liftable, Value>();
  /** What `lift` returns for each buffer now (its input, or its last assigned value, reshaped). */
  private readonly current = new Map<Liftable, Value>();
  private readonly randoms: Value[] = [];
  /** When set, module calls record their inputs and outputs here (`path:in.i`, `path:out`). */
  activations: Map<string, Value> | undefined;

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

  /** Records a module call's tensors when activations are being captured; repeated calls get `path#k`. */
  recordCall(path: string, inputs: readonly Value[], output: Value): void {
    const acts = this.activations;
    if (!acts) return;
    let key = path;
    for (let k = 2; acts.has(`${key}:out`); k++) key = `${path}#${k}`;
    inputs.forEach((v, i) => acts.set(`${key}:in.${i}`, v));
    acts.set(`${key}:out`, output);
  }

  /** Runs `fn` with the module path set to `path` (absolute). */
  withPath<T>(path: string, fn: () => T): T {
    const saved = this.scopes.splice(0, this.scopes.length, path);
    try {
      return fn();
    } finally {
      this.scopes.splice(0, this.scopes.length, ...saved);
    }
  }

  emit<K extends OpName>(op: K, inputs: readonly Value[], attrs: AttrsOf<K>): Value[] {
    return this.graph.addNode(op, inputs, attrs, this.scope);
  }

  /**
   * The buffer's current value in this trace: its graph input until the
   * trace assigns it, then the assigned value in the buffer's own shape (a
   * train step's EMA reads the weights its optimizer update assigned).
   */
  lift(p: Liftable): Value {
    let v = this.current.get(p);
    if (v) return v;
    const assigned = this.updates.get(p);
    if (assigned) {
      v = sameShape(assigned.shape, p.data.shape) ? assigned : this.emit('reshape', [assigned], { shape: p.data.shape })[0]!;
    } else {
      v = this.graph.addInput({ dtype: p.data.dtype, shape: p.data.shape }, p.name, 'param');
      this.lifted.set(p, v);
    }
    this.current.set(p, v);
    return v;
  }

  /** The parameters this trace lifted, with their graph inputs, in order of first use. */
  liftedParams(): [Liftable, Value][] {
    return [...this.lifted.entries()];
  }

  /**
   * Records a new value for a buffer (e.g. BatchNorm running stats in train
   * mode). Runners return it as an extra output and store it after the run,
   * as PyTorch's in-place buffer updates would, in the buffer's own shape:
   * the value may be any view with as many elements (an optimizer's flat
   * slice, or its chunk in rows), which spares ONNX Runtime a Reshape to a
   * graph output, a copy.
   */
  assign(p: Liftable, value: Value): void {
    if (numel(value.shape) !== p.data.size) throw new ShapeError(`assign: a value of shape ${fmtShape(value.shape)} for a buffer of shape ${fmtShape(p.data.shape)} (the new value must have as many elements as the buffer: '${p.name}')`);
    this.updates.set(p, value);
    this.current.delete(p);
  }

  stateUpdates(): [Liftable, Value][] {
    return [...this.updates.entries()];
  }

  /**
   * A fresh graph input of uniform [0, 1) float32 noise (dropout, drop-path).
   * Runners feed it from their seeded generator on every call, so graphs stay
   * static and deterministic given the seed.
   */
  random(shape: readonly number[]): Value {
    const v = this.graph.addInput({ dtype: 'float32', shape }, `random_${this.randoms.length}`);
    this.randoms.push(v);
    return v;
  }

  randomInputs(): readonly Value[] {
    return this.randoms;
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
