/**
 * Graph rewriting. The IR Graph is append-only, so a pass builds a new graph:
 * it copies the live nodes through a value map, replacing the ones it
 * rewrites. Parameters are re-created on first use, so a parameter that the
 * rewrite no longer needs disappears from the result.
 */
import { Graph, type Node, type Value } from '../../ir/graph.js';
import type { NDArray } from '../../ir/ndarray.js';

/** A graph with the values of its 'param' inputs: what inference passes transform. */
export interface ParamGraph {
  readonly graph: Graph;
  readonly params: ReadonlyMap<Value, NDArray>;
}

/** Builds the rewritten graph; handed to a pass's node callback. */
export class GraphRewriter {
  readonly graph = new Graph();
  readonly params = new Map<Value, NDArray>();
  private readonly map = new Map<Value, Value>();

  constructor(private readonly source: ParamGraph) {
    // Function inputs keep their order (they are the model's inputs); parameters come lazily.
    for (const v of source.graph.inputs) if (v.role === 'input') this.map.set(v, this.graph.addInput(v, v.name));
  }

  /** The new graph's value for a value of the source graph. */
  value(old: Value): Value {
    const mapped = this.map.get(old);
    if (mapped) return mapped;
    if (old.role !== 'param') throw new Error(`rewrite: value ${old} is used before it is computed`);
    const data = this.source.params.get(old);
    if (!data) throw new Error(`rewrite: no value for parameter '${old.name}'`);
    return this.set(old, this.addParam(old.name, data));
  }

  /** The value of a source parameter, or undefined for anything else. */
  paramData(v: Value): NDArray | undefined {
    return v.role === 'param' ? this.source.params.get(v) : undefined;
  }

  /** A new parameter input (no counterpart in the source graph). */
  addParam(name: string, data: NDArray): Value {
    const v = this.graph.addInput(data, name, 'param');
    this.params.set(v, data);
    return v;
  }

  /** Records that `old` is now computed as `now`. */
  set(old: Value, now: Value): Value {
    this.map.set(old, now);
    return now;
  }

  /** Copies a node unchanged (inputs mapped), recording its outputs. */
  copy(node: Node): void {
    const outs = this.graph.addNode(node.op, node.inputs.map((v) => this.value(v)), node.attrs as never, node.scope);
    node.outputs.forEach((v, i) => this.set(v, outs[i]!));
  }
}

/**
 * Rewrites the live part of `source`: `rewrite` handles a node itself
 * (recording its outputs with `set`) and returns true, or returns false to
 * have it copied. Graph outputs are mapped in order.
 */
export function rewriteGraph(source: ParamGraph, rewrite: (node: Node, r: GraphRewriter) => boolean): ParamGraph {
  const r = new GraphRewriter(source);
  for (const node of source.graph.liveNodes()) if (!rewrite(node, r)) r.copy(node);
  r.graph.outputs = source.graph.outputs.map((v) => r.value(v));
  return { graph: r.graph, params: r.params };
}

/** How many times each value is used by the live nodes and the graph outputs. */
export function useCounts(graph: Graph): Map<Value, number> {
  const uses = new Map<Value, number>();
  const use = (v: Value) => uses.set(v, (uses.get(v) ?? 0) + 1);
  for (const node of graph.liveNodes()) node.inputs.forEach(use);
  graph.outputs.forEach(use);
  return uses;
}

/** A predicate: is `v` a parameter whose value `source` holds (so a pass may fold it into new weights)? */
export function paramIn(source: ParamGraph): (v: Value | undefined) => v is Value {
  return (v): v is Value => v !== undefined && v.role === 'param' && source.params.has(v);
}

/** Whether `n` is a transpose with exactly this permutation. */
export function isTranspose(n: Node | undefined, ...perm: number[]): n is Node {
  return n?.op === 'transpose' && (n.attrs.perm as number[]).join() === perm.join();
}

