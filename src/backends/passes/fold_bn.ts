/**
 * Folds an eval-mode BatchNorm into the convolution that feeds it:
 *
 *   y = γ · (conv(x, W) + b − μ) / √(σ² + ε) + β  =  conv(x, W·s) + (b − μ)·s + β,   s = γ / √(σ² + ε)
 *
 * per output channel. The new weights are computed in float64 and stored in
 * the convolution's dtype. Only a conv2d whose output feeds nothing but the
 * BatchNorm, and whose weights and statistics are all parameters, is folded.
 */
import type { Node, Value } from '../../ir/graph.js';
import { NDArray } from '../../ir/ndarray.js';
import { type GraphRewriter, type ParamGraph, rewriteGraph, useCounts } from './rewrite.js';

export interface FoldResult extends ParamGraph {
  /** How many BatchNorms were folded. */
  readonly folded: number;
}

export function foldBatchNorm(source: ParamGraph): FoldResult {
  const uses = useCounts(source.graph);
  const isParam = (v: Value | undefined) => v !== undefined && v.role === 'param' && source.params.has(v);
  const foldable = new Set<Node>();
  for (const bn of source.graph.liveNodes()) {
    if (bn.op !== 'batch_norm') continue;
    const conv = bn.inputs[0]!.producer;
    if (conv?.op !== 'conv2d' || uses.get(conv.outputs[0]!) !== 1) continue;
    const [, weight, bias] = conv.inputs;
    if (bn.inputs.slice(1).every(isParam) && isParam(weight) && (bias === undefined || isParam(bias))) foldable.add(bn);
  }
  const convs = new Set([...foldable].map((bn) => bn.inputs[0]!.producer!));
  const result = rewriteGraph(source, (node, r) => {
    // The conv is emitted when its BatchNorm is reached: the fold needs both.
    if (convs.has(node)) return true;
    if (!foldable.has(node)) return false;
    emitFolded(node, r);
    return true;
  });
  return { ...result, folded: foldable.size };
}

function emitFolded(bn: Node, r: GraphRewriter): void {
  const conv = bn.inputs[0]!.producer!;
  const [x, w, b] = conv.inputs as [Value, Value, Value | undefined];
  const [gamma, beta, mean, variance] = bn.inputs.slice(1).map((v) => r.paramData(v)!.toFloat64());
  const eps = bn.attrs.epsilon as number;
  const weight = r.paramData(w)!;
  const wd = weight.toFloat64();
  const bias = b ? r.paramData(b)!.toFloat64() : undefined;
  const cout = weight.shape[0]!;
  const perChannel = wd.length / cout;
  const newWeight = new Float64Array(wd.length);
  const newBias = new Float64Array(cout);
  for (let c = 0; c < cout; c++) {
    const s = gamma![c]! / Math.sqrt(variance![c]! + eps);
    for (let i = c * perChannel; i < (c + 1) * perChannel; i++) newWeight[i] = wd[i]! * s;
    newBias[c] = ((bias?.[c] ?? 0) - mean![c]!) * s + beta![c]!;
  }
  const dtype = weight.dtype;
  const prefix = w.name.replace(/\.weight$/, '');
  const wv = r.addParam(w.name, new NDArray('float64', weight.shape, newWeight).astype(dtype));
  const bv = r.addParam(`${prefix}.bias`, new NDArray('float64', [cout], newBias).astype(dtype));
  const [y] = r.graph.addNode('conv2d', [r.value(x), wv, bv], conv.attrs as never, conv.scope);
  r.set(bn.outputs[0]!, y!);
}
