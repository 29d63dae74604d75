/**
 * Reverse-mode autodiff over the traced IR. `grad` walks the nodes between
 * `wrt` and the output backwards and asks each op's VJP rule (`rules/`) for
 * its input cotangents, written with ordinary tensor ops, so the backward
 * pass is more IR in the same trace: it compiles and exports like the rest.
 */
import { ShapeError, TraceError, fmtShape } from '../errors.js';
import type { Node, Value } from '../ir/graph.js';
import { isFloat } from '../ir/ndarray.js';
import { type Tensor, full, wrap } from '../tensor/tensor.js';
import { activeTrace } from '../tensor/trace.js';
import { RULES } from './rules/index.js';

/**
 * d(output)/d(wrt) as tensors of the active trace. `output` must be a scalar
 * unless `seed` (the output's cotangent) is given. A `wrt` tensor that does
 * not influence the output gets zeros.
 */
export function grad(output: Tensor, wrt: readonly Tensor[], seed?: Tensor): Tensor[] {
  const trace = activeTrace();
  const out = output.value;
  if (!isFloat(out.dtype)) throw new TraceError(`grad: the output must be a float tensor, got ${out.dtype}`);
  if (!seed && out.shape.length !== 0) throw new ShapeError(`grad: the output must be a scalar (got ${fmtShape(out.shape)}); reduce it first or pass a seed cotangent`);
  if (seed && seed.shape.join() !== out.shape.join()) throw new ShapeError(`grad: seed ${fmtShape(seed.shape)} must have the output's shape ${fmtShape(out.shape)}`);
  const targets = wrt.map((t) => t.value);

  // Nodes on a path from some wrt value to the output.
  const fromWrt = new Set<Value>(targets);
  const nodes = trace.graph.liveNodes([out]);
  const onPath: Node[] = [];
  for (const n of nodes) {
    if (n.inputs.some((v) => fromWrt.has(v))) {
      for (const o of n.outputs) fromWrt.add(o);
      onPath.push(n);
    }
  }

  const cot = new Map<Value, Tensor>();
  cot.set(out, seed ?? full([], 1, out.dtype));
  const accumulate = (v: Value, g: Tensor) => {
    if (g.shape.join() !== v.shape.join()) {
      throw new ShapeError(`internal: a VJP produced a cotangent ${fmtShape(g.shape)} for a value ${fmtShape(v.shape)}`);
    }
    const prev = cot.get(v);
    cot.set(v, prev ? prev.add(g) : g);
  };

  for (let i = onPath.length - 1; i >= 0; i--) {
    const node = onPath[i]!;
    const gOut = node.outputs.map((o) => cot.get(o));
    if (gOut.every((g) => g === undefined)) continue;
    const needs = node.inputs.map((v) => fromWrt.has(v) && isFloat(v.dtype));
    if (!needs.some(Boolean)) continue;
    const rule = RULES[node.op];
    if (!rule) throw new TraceError(`grad: op '${node.op}' has no VJP rule`);
    const gIn = trace.withScope(node.scope ? `${node.scope}.backward` : 'backward', () =>
      rule({ node, inputs: node.inputs.map(wrap), outputs: node.outputs.map(wrap), attrs: node.attrs as never, needs }, gOut),
    );
    node.inputs.forEach((v, j) => {
      const g = gIn[j];
      if (g && needs[j]) accumulate(v, g);
    });
  }
  return targets.map((v) => cot.get(v) ?? full(v.shape, 0, v.dtype));
}
