/**
 * Folds eval-mode BatchNorms into convolutions. A BatchNorm is the per-channel
 * affine map x ↦ s·x + t with s = γ / √(σ² + ε), t = β − μ·s, so
 *
 *   after a conv:   s·(conv(x, W) + b) + t  =  conv(x, W·s[out]) + (b·s + t)
 *   before a conv:  conv(s·x + t, W) + b    =  conv(x, W·s[in]) + (b + Σ W·t[in])
 *
 * The second holds only without padding (the conv would pad s·x + t with
 * zeros where the folded conv pads x), e.g. a pre-norm BatchNorm feeding a
 * 1×1 conv, as in UniFormer's conv blocks. The new weights are computed in
 * float64 and stored in the convolution's dtype. A pair is folded only when
 * the first node's output feeds nothing but the second and the weights and
 * statistics are all parameters.
 */
import type { Node, Value } from '../../ir/graph.js';
import { NDArray } from '../../ir/ndarray.js';
import { type GraphRewriter, type ParamGraph, paramIn, rewriteGraph, useCounts } from './rewrite.js';

export interface FoldResult extends ParamGraph {
  /** How many BatchNorms were folded. */
  readonly folded: number;
}

export function foldBatchNorm(source: ParamGraph): FoldResult {
  const uses = useCounts(source.graph);
  const isParam = paramIn(source);
  const foldableConv = (conv: Node | undefined): conv is Node => {
    if (conv?.op !== 'conv2d' || uses.get(conv.outputs[0]!) !== 1) return false;
    const [, weight, bias] = conv.inputs;
    return isParam(weight) && (bias === undefined || isParam(bias));
  };
  const consumer = new Map<Value, Node>();
  for (const node of source.graph.liveNodes()) for (const v of node.inputs) consumer.set(v, node);

  // BatchNorm → the conv it folds into. Folding into the preceding conv takes precedence: a conv
  // between two BatchNorms absorbs the one after it.
  const bns = source.graph.liveNodes().filter((n) => n.op === 'batch_norm' && n.inputs.slice(1).every(isParam));
  const after = new Map<Node, Node>();
  for (const bn of bns) {
    const conv = bn.inputs[0]!.producer;
    if (foldableConv(conv)) after.set(bn, conv);
  }
  const convsAfter = new Set(after.values());
  const before = new Map<Node, Node>();
  for (const bn of bns) {
    const out = bn.outputs[0]!;
    const next = consumer.get(out);
    if (after.has(bn) || uses.get(out) !== 1 || next?.inputs[0] !== out || convsAfter.has(next)) continue;
    if (foldableConv(next) && (next.attrs.padding as number[]).every((p) => p === 0)) before.set(bn, next);
  }
  const convsBefore = new Map([...before].map(([bn, conv]) => [conv, bn]));
  const result = rewriteGraph(source, (node, r) => {
    // A folded pair is emitted at its second node: the fold needs both.
    if (convsAfter.has(node) || before.has(node)) return true;
    const convBefore = after.get(node);
    const bnBefore = convsBefore.get(node);
    if (convBefore) emitFolded(convBefore, node, 'after', r);
    else if (bnBefore) emitFolded(node, bnBefore, 'before', r);
    else return false;
    return true;
  });
  return { ...result, folded: after.size + before.size };
}

function emitFolded(conv: Node, bn: Node, where: 'after' | 'before', r: GraphRewriter): void {
  const [convInput, w, b] = conv.inputs as [Value, Value, Value | undefined];
  const [gamma, beta, mean, variance] = bn.inputs.slice(1).map((v) => r.paramData(v)!.toFloat64());
  const eps = bn.attrs.epsilon as number;
  const scale = Float64Array.from(gamma!, (g, c) => g / Math.sqrt(variance![c]! + eps));
  const shift = Float64Array.from(beta!, (bt, c) => bt - mean![c]! * scale[c]!);
  const weight = r.paramData(w)!;
  const wd = weight.toFloat64();
  const [cout, cinG] = weight.shape as [number, number];
  const taps = wd.length / (cout * cinG);
  const coutG = cout / (conv.attrs.groups as number);
  const newWeight = new Float64Array(wd.length);
  const newBias = b ? r.paramData(b)!.toFloat64().slice() : new Float64Array(cout);
  for (let o = 0; o < cout; o++) {
    if (where === 'after') newBias[o] = newBias[o]! * scale[o]! + shift[o]!;
    for (let ci = 0; ci < cinG; ci++) {
      // The input channel this weight reads: its group's first channel + ci.
      const c = where === 'after' ? o : Math.floor(o / coutG) * cinG + ci;
      for (let k = (o * cinG + ci) * taps; k < (o * cinG + ci + 1) * taps; k++) {
        newWeight[k] = wd[k]! * scale[c]!;
        if (where === 'before') newBias[o] += wd[k]! * shift[c]!;
      }
    }
  }
  const dtype = weight.dtype;
  const prefix = w.name.replace(/\.weight$/, '');
  const wv = r.addParam(w.name, new NDArray('float64', weight.shape, newWeight).astype(dtype));
  const bv = r.addParam(`${prefix}.bias`, new NDArray('float64', [cout], newBias).astype(dtype));
  const x = where === 'after' ? convInput : bn.inputs[0]!;
  const [y] = r.graph.addNode('conv2d', [r.value(x), wv, bv], conv.attrs as never, conv.scope);
  r.set((where === 'after' ? bn : conv).outputs[0]!, y!);
}
