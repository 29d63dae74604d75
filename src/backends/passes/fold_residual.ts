/**
 * Folds a residual around a depthwise convolution into the convolution:
 *
 *   x + dwconv(x, W, b)  =  dwconv(x, W + δ, b)
 *
 * where δ is 1 at each channel's centre tap: a stride-1 depthwise conv with
 * "same" padding reads x[c, i, j] through its centre tap, so adding one
 * there adds x. UniFormer's and CPVT-style positional encodings
 * (`x + pos_embed(x)`) are this pattern. Besides saving the Add, it keeps
 * ONNX Runtime's blocked (NCHWc) layout alive through a stage: a residual
 * whose other input is a plain tensor makes ORT reorder the conv's output
 * back to NCHW, and every later residual of the stage then pays a reorder
 * in and out (UniFormer-S: 42 reorders and 32 Adds fewer per forward).
 * The new weight is computed in float64 and stored in the weight's dtype.
 */
import type { Node, Value } from '../../ir/graph.js';
import { NDArray } from '../../ir/ndarray.js';
import type { ConvAttrs } from '../../ir/ops.js';
import { type ParamGraph, paramIn, rewriteGraph, useCounts } from './rewrite.js';

export interface ResidualFoldResult extends ParamGraph {
  /** How many residual Adds were folded. */
  readonly folded: number;
}

export function foldConvResidual(source: ParamGraph): ResidualFoldResult {
  const uses = useCounts(source.graph);
  const isParam = paramIn(source);
  /** The conv of `add(x, conv(x))` (either order) when it folds, else undefined. */
  const foldable = (add: Node): Node | undefined => {
    if (add.op !== 'add' || add.inputs[0]!.shape.join() !== add.inputs[1]!.shape.join()) return undefined;
    for (const [x, y] of [add.inputs, [...add.inputs].reverse()] as [Value, Value][]) {
      const conv = y.producer;
      if (conv?.op !== 'conv2d' || conv.inputs[0] !== x || uses.get(y) !== 1) continue;
      const [, weight, bias] = conv.inputs;
      if (!isParam(weight) || uses.get(weight!) !== 1 || (bias !== undefined && !isParam(bias))) continue;
      if (isCentredDepthwise(conv.attrs as unknown as ConvAttrs, weight!.shape, x.shape[1]!)) return conv;
    }
    return undefined;
  };
  const convOf = new Map<Node, Node>();
  for (const node of source.graph.liveNodes()) {
    const conv = foldable(node);
    if (conv) convOf.set(node, conv);
  }
  const folded = new Set(convOf.values());
  const result = rewriteGraph(source, (node, r) => {
    if (folded.has(node)) return true; // emitted at its Add
    const conv = convOf.get(node);
    if (!conv) return false;
    const [x, w, b] = conv.inputs as [Value, Value, Value | undefined];
    const weight = r.paramData(w)!;
    const data = weight.toFloat64().slice();
    const [channels, , kh, kw] = weight.shape as [number, number, number, number];
    const centre = ((kh - 1) / 2) * kw + (kw - 1) / 2;
    for (let c = 0; c < channels; c++) data[c * kh * kw + centre] += 1;
    const wv = r.addParam(w.name, new NDArray('float64', weight.shape, data).astype(weight.dtype));
    const inputs = b ? [r.value(x), wv, r.value(b)] : [r.value(x), wv];
    const [y] = r.graph.addNode('conv2d', inputs, conv.attrs as never, conv.scope);
    r.set(node.outputs[0]!, y!);
    return true;
  });
  return { ...result, folded: convOf.size };
}

/** A stride-1 depthwise conv (one filter per channel) with odd kernels and padding that keeps taps centred. */
function isCentredDepthwise(a: ConvAttrs, weightShape: readonly number[], channels: number): boolean {
  const [cout, cinPerGroup, kh, kw] = weightShape as [number, number, number, number];
  if (a.groups !== channels || cout !== channels || cinPerGroup !== 1 || kh % 2 === 0 || kw % 2 === 0) return false;
  if (a.stride[0] !== 1 || a.stride[1] !== 1) return false;
  const [ph, pw] = [(a.dilation[0] * (kh - 1)) / 2, (a.dilation[1] * (kw - 1)) / 2];
  return a.padding[0] === ph && a.padding[2] === ph && a.padding[1] === pw && a.padding[3] === pw;
}
