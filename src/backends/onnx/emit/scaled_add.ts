/**
 * `a + y·s` (and `a − y·s`) as ONE pass: ONNX Runtime's contrib GatedAdd,
 * X + Y·gate with a gate per row (shape X.shape[:-1] + [1]). As a Mul and an
 * Add it is two passes over memory, and the second reads the first's output
 * back: 2.3–3× the time at one thread (1.2M floats: 0.62 against 1.45–1.87 ms),
 * 1.3–2.3× at two. Backward formulas and optimizer updates are full of this
 * shape: softmax's y·g − y·Σ(y·g), layer norm's and batch norm's per-row and
 * per-channel corrections, AdamW's moment and parameter updates.
 *
 * The scale may vary along leading axes only (a scalar, a per-row sum, a
 * per-channel vector over NCHW): the trailing axes it is constant along
 * become GatedAdd's last axis. The Mul is then not emitted at all.
 */
import type { Node, Value } from '../../../ir/graph.js';
import { NDArray, numel, sameShape } from '../../../ir/ndarray.js';
import type { EmitContext } from '../model.js';
import { MS_DOMAIN } from './types.js';

/** Smaller tensors keep Mul and Add (a judgement, not a measured optimum): the pass saved is then a few µs, like the extra Reshape nodes. */
const MIN_SIZE = 4096;
/** Rows a scalar-scaled tensor is cut into: GatedAdd parallelises over rows (1.2 M floats, 2 threads: 0.32 ms in 8 rows, 0.63 in one). */
const SCALAR_ROWS = 8;

export interface ScaledAdd {
  /** The product the GatedAdd absorbs (it is not emitted). */
  readonly mul: Node;
  readonly a: Value;
  readonly y: Value;
  readonly scale: Value;
  readonly negate: boolean;
  /** Whether the result is a graph output, which a Reshape would copy. */
  readonly isOutput: boolean;
}

/** The scale's shape right-aligned to rank `r`, and the last axis it varies along (−1: a scalar). */
function scaleAxes(scale: Value, r: number): { padded: number[]; last: number } {
  const padded = [...Array<number>(r - scale.shape.length).fill(1), ...scale.shape];
  let last = r - 1;
  while (last >= 0 && padded[last] === 1) last--;
  return { padded, last };
}

/** How `node` (an add or sub) fuses with the mul producing one of its operands, if it does. */
function scaledAddOf(node: Node, uses: ReadonlyMap<Value, number>, outputs: ReadonlySet<Value>): ScaledAdd | undefined {
  if (node.op !== 'add' && node.op !== 'sub') return undefined;
  const out = node.outputs[0]!;
  if (out.dtype !== 'float32' || numel(out.shape) < MIN_SIZE) return undefined;
  // add: either operand may be the product (the second first); sub: only the subtrahend.
  const order = node.op === 'add' ? [1, 0] : [1];
  for (const k of order) {
    const [a, b] = [node.inputs[1 - k]!, node.inputs[k]!];
    const mul = b.producer;
    if (mul?.op !== 'mul' || uses.get(b) !== 1 || !sameShape(a.shape, out.shape)) continue;
    for (const j of [0, 1]) {
      const [y, scale] = [mul.inputs[j]!, mul.inputs[1 - j]!];
      if (!sameShape(y.shape, out.shape) || scale.shape.length > y.shape.length) continue;
      if (scaleAxes(scale, y.shape.length).last < y.shape.length - 1) return { mul, a, y, scale, negate: node.op === 'sub', isOutput: outputs.has(out) };
    }
  }
  return undefined;
}

/** The add/sub nodes of `nodes` that lower to GatedAdd, keyed by node (their muls are not emitted). */
export function planScaledAdds(nodes: readonly Node[], uses: ReadonlyMap<Value, number>, outputs: ReadonlySet<Value>): Map<Node, ScaledAdd> {
  const plan = new Map<Node, ScaledAdd>();
  for (const n of nodes) {
    const s = scaledAddOf(n, uses, outputs);
    if (s) plan.set(n, s);
  }
  return plan;
}

/** Emits one planned GatedAdd; returns the output name. */
export function emitScaledAdd(ctx: EmitContext, { a, y, scale, negate, isOutput }: ScaledAdd): string[] {
  const shape = y.shape;
  const { padded, last } = scaleAxes(scale, shape.length);
  // GatedAdd's view: the axes the scale varies along, then everything else as one row. A scalar
  // scale gets a few rows to share among threads, unless the view would cost a copy: a graph
  // output keeps its own shape (an optimizer's updated state comes in rows, see chunkTensor).
  const lead =
    last >= 0 ? shape.slice(0, last + 1)
    : isOutput ? shape.slice(0, -1)
    : [numel(shape) % SCALAR_ROWS === 0 ? SCALAR_ROWS : 1];
  const view = [...lead, numel(shape) / numel(lead)];
  const gateShape = [...lead, 1];
  const reshape = (name: string, from: readonly number[], to: readonly number[]) => (sameShape(from, to) ? name : ctx.reshape(name, to));
  const own = last < 0 ? gateShape.map(() => 1) : [...padded.slice(0, last + 1), 1];
  let gate = reshape(ctx.name(scale), scale.shape, own);
  if (!sameShape(own, gateShape)) gate = ctx.node('Expand', [gate, ctx.ints(gateShape)])[0]!;
  if (negate) gate = ctx.node('Neg', [gate])[0]!;
  const [sum] = ctx.node('GatedAdd', [reshape(ctx.name(a), shape, view), reshape(ctx.name(y), shape, view), gate], {}, 1, MS_DOMAIN);
  return [reshape(sum!, view, shape)];
}

/**
 * a + y·s for a constant scalar s, from a lowering that emits a chain itself (names, not IR values), with y
 * shaped like `like`: one GatedAdd in rows of SCALAR_ROWS under the same conditions as the planned ones, else
 * Mul and Add.
 */
export function emitScalarScaledAdd(ctx: EmitContext, a: string, y: string, s: number, like: Value): string[] {
  const n = numel(like.shape);
  if (!(ctx.contribOps && ctx.fixedShapes && like.dtype === 'float32' && n >= MIN_SIZE && n % SCALAR_ROWS === 0)) {
    return ctx.node('Add', [a, ctx.node('Mul', [y, ctx.scalar(s, like.dtype)])[0]!]);
  }
  const rows = (name: string) => ctx.reshape(name, [SCALAR_ROWS, n / SCALAR_ROWS]);
  const gate = ctx.constant(NDArray.float32([SCALAR_ROWS, 1], new Float32Array(SCALAR_ROWS).fill(s)));
  const [sum] = ctx.node('GatedAdd', [rows(a), rows(y), gate], {}, 1, MS_DOMAIN);
  return [ctx.reshape(sum!, like.shape)];
}
