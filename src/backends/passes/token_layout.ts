/**
 * Rewrites the two ways models move between a feature map and tokens so
 * that the transpose sits next to the map:
 *
 *   map → tokens:  reshape [N, C, H·W] → transpose [0, 2, 1]
 *              ⇒  transpose [0, 2, 3, 1] → reshape [N, H·W, C]
 *   tokens → map:  transpose [0, 2, 1] → reshape [N, C, H, W]
 *              ⇒  reshape [N, H, W, C] → transpose [0, 3, 1, 2]
 *
 * Both sides compute the same tensor. The second form is the one ONNX
 * Runtime's NCHWc transformer recognises: it fuses an NCHW↔NHWC transpose
 * into the reorder out of (or into) its blocked conv layout, so the
 * transpose costs no pass (`flatten(2).transpose(1, 2)` after a conv, as in
 * CeiT's LeFF and most patch embeddings, otherwise pays a full Transpose).
 */
import type { Node, Value } from '../../ir/graph.js';
import { type ParamGraph, isTranspose, rewriteGraph, useCounts } from './rewrite.js';

export interface TokenLayoutResult extends ParamGraph {
  /** How many map ↔ token conversions were rewritten. */
  readonly rewritten: number;
}

export function tokenLayout(source: ParamGraph): TokenLayoutResult {
  const uses = useCounts(source.graph);
  // second node of a pair → first node
  const pairs = new Map<Node, Node>();
  for (const node of source.graph.liveNodes()) {
    const first = node.inputs[0]?.producer;
    // A node is in at most one pair: reshape → transpose → reshape rewrites its first two.
    if (!first || pairs.has(first) || uses.get(first.outputs[0]!) !== 1) continue;
    const x = first.inputs[0]!;
    if (isTranspose(node, 0, 2, 1) && first.op === 'reshape' && x.shape.length === 4) {
      const [n, c, h, w] = x.shape as [number, number, number, number];
      if ((first.outputs[0]!.shape as number[]).join() === [n, c, h * w].join()) pairs.set(node, first);
    } else if (node.op === 'reshape' && isTranspose(first, 0, 2, 1) && node.outputs[0]!.shape.length === 4) {
      const [n, c] = node.outputs[0]!.shape as [number, number];
      if (x.shape[0] === n && x.shape[2] === c) pairs.set(node, first);
    }
  }
  const firsts = new Set(pairs.values());
  const result = rewriteGraph(source, (node, r) => {
    if (firsts.has(node)) return true; // emitted with the second node
    const first = pairs.get(node);
    if (!first) return false;
    const x: Value = r.value(first.inputs[0]!);
    const out = node.outputs[0]!.shape as number[];
    let y: Value;
    if (node.op === 'transpose') {
      const [n, c, h, w] = x.shape as [number, number, number, number];
      [y] = r.graph.addNode('transpose', [x], { perm: [0, 2, 3, 1] }, first.scope) as [Value];
      [y] = r.graph.addNode('reshape', [y], { shape: [n, h * w, c] }, node.scope) as [Value];
    } else {
      const [n, c, h, w] = out as [number, number, number, number];
      [y] = r.graph.addNode('reshape', [x], { shape: [n, h, w, c] }, first.scope) as [Value];
      [y] = r.graph.addNode('transpose', [y], { perm: [0, 3, 1, 2] }, node.scope) as [Value];
    }
    r.set(node.outputs[0]!, y);
    return true;
  });
  return { ...result, rewritten: pairs.size };
}
