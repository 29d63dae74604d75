/**
 * Reverse-mode autodiff over the traced IR. `grad` walks the nodes between
 * `wrt` and the output backwards and asks each op's VJP rule (`rules/`) for
 * its input cotangents, written with ordinary tensor ops, so the backward
 * pass is more IR in the same trace: it compiles and exports like the rest.
 */
import { ShapeError, TraceError, fmtShape } from '../errors.js';
import type { Node, Value } from '../ir/graph.js';
import { isFloat } from '../ir/ndarray.js';
import { type Tensor, concat, full, wrap, zeros } from '../tensor/tensor.js';
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

  // Cotangent contributions per value, summed when the value's producer is reached.
  const parts = new Map<Value, Tensor[]>();
  parts.set(out, [seed ?? full([], 1, out.dtype)]);
  const accumulate = (v: Value, g: Tensor) => {
    if (g.shape.join() !== v.shape.join()) {
      throw new ShapeError(`internal: a VJP produced a cotangent ${fmtShape(g.shape)} for a value ${fmtShape(v.shape)}`);
    }
    const list = parts.get(v);
    if (list) list.push(g);
    else parts.set(v, [g]);
  };
  const total = (v: Value): Tensor | undefined => {
    const list = parts.get(v);
    if (list && list.length > 1) parts.set(v, [sumCotangents(list)]);
    return parts.get(v)?.[0];
  };

  for (let i = onPath.length - 1; i >= 0; i--) {
    const node = onPath[i]!;
    if (node.outputs.every((o) => !parts.has(o))) continue;
    const needs = node.inputs.map((v) => fromWrt.has(v) && isFloat(v.dtype));
    if (!needs.some(Boolean)) continue;
    const rule = RULES[node.op];
    if (!rule) throw new TraceError(`grad: op '${node.op}' has no VJP rule`);
    const gIn = trace.withScope(node.scope ? `${node.scope}.backward` : 'backward', () => {
      const gOut = node.outputs.map(total);
      return rule({ node, inputs: node.inputs.map(wrap), outputs: node.outputs.map(wrap), attrs: node.attrs as never, needs }, gOut);
    });
    node.inputs.forEach((v, j) => {
      const g = gIn[j];
      if (g && needs[j]) accumulate(v, g);
    });
  }
  return targets.map((v) => total(v) ?? full(v.shape, 0, v.dtype));
}

/** A cotangent that is `inner` zero-padded along one axis (what a slice's VJP produces). */
interface PaddedPiece {
  padded: Tensor;
  inner: Tensor;
  axis: number;
  begin: number;
}

function asPaddedPiece(g: Tensor): PaddedPiece | undefined {
  const p = g.value.producer;
  if (!p || p.op !== 'pad' || p.attrs.mode !== 'constant' || p.attrs.value !== 0) return undefined;
  const pads = p.attrs.pads as readonly number[];
  const r = g.rank;
  const axes = [...Array(r).keys()].filter((i) => pads[i]! > 0 || pads[i + r]! > 0);
  return axes.length === 1 ? { padded: g, inner: wrap(p.inputs[0]!), axis: axes[0]!, begin: pads[axes[0]!]! } : undefined;
}

/**
 * The sum of a value's cotangent contributions. Zero-padded pieces of disjoint
 * ranges along the same axis (the VJPs of q, k, v = split(qkv), of chunk, …)
 * are joined with one concat (the gaps zero-filled) instead of padding each
 * piece to full size and adding: one full-size pass instead of 2n − 1.
 */
function sumCotangents(list: readonly Tensor[]): Tensor {
  const rest: Tensor[] = [];
  const byAxis = new Map<number, PaddedPiece[]>();
  for (const g of list) {
    const piece = asPaddedPiece(g);
    if (!piece) rest.push(g);
    else byAxis.set(piece.axis, [...(byAxis.get(piece.axis) ?? []), piece]);
  }
  const shape = list[0]!.shape;
  for (const [axis, pieces] of byAxis) {
    pieces.sort((a, b) => a.begin - b.begin);
    const disjoint = pieces.every((p, i) => i === 0 || pieces[i - 1]!.begin + pieces[i - 1]!.inner.shape[axis]! <= p.begin);
    if (pieces.length < 2 || !disjoint) {
      rest.push(...pieces.map((p) => p.padded));
      continue;
    }
    const blocks: Tensor[] = [];
    let at = 0;
    const gap = (to: number) => {
      if (to > at) blocks.push(zeros(shape.map((d, i) => (i === axis ? to - at : d)), list[0]!.dtype));
    };
    for (const p of pieces) {
      gap(p.begin);
      blocks.push(p.inner);
      at = p.begin + p.inner.shape[axis]!;
    }
    gap(shape[axis]!);
    rest.push(concat(blocks, axis));
  }
  return rest.reduce((a, b) => a.add(b));
}
