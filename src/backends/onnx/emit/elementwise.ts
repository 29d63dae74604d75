import { ONNX_DTYPE_CODE } from '../dtypes.js';
import { emitScalarScaledAdd } from './scaled_add.js';
import type { Value } from '../../../ir/graph.js';
import type { EmitContext } from '../model.js';
import type { Emitter, EmitterTable } from './types.js';
import { MS_DOMAIN, VOLUTION_DOMAIN, attrsOf } from './types.js';

const simple = (opType: string): Emitter => (ctx, _, inputs) => ctx.node(opType, inputs);

/**
 * Whether ONNX Runtime runs its own Gelu on `v` faster than volution's kernel would: after a bias
 * add read only by that Gelu (its BiasGelu fusion takes both in one pass), or after a convolution
 * with constant weights (its NCHWc layout then runs through the Gelu; a custom op would need the
 * layout reordered on both sides: 26 against 4 ms of reorders in CeiT-T's batch-8 forward).
 */
function ortFusesGelu(ctx: EmitContext, v: Value): boolean {
  const p = v.producer;
  if (p?.op === 'conv2d') return ctx.isStatic(p.inputs[1]!);
  if (p?.op !== 'add' || ctx.useCount(v) !== 1) return false;
  return p.inputs.some((b) => b.shape.length === 1 && b.shape[0] === v.shape.at(-1) && b.shape[0]! > 1);
}

export const elementwiseEmitters: EmitterTable<
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'equal' | 'less' | 'greater' | 'and' | 'or' | 'not' | 'where'
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'tanh' | 'erf' | 'gelu' | 'gelu_grad' | 'hard_sigmoid' | 'sigmoid' | 'relu' | 'abs' | 'sign' | 'cast' | 'constant'
> = {
  add: simple('Add'),
  sub: simple('Sub'),
  mul: simple('Mul'),
  div: simple('Div'),
  pow: simple('Pow'),
  maximum: simple('Max'),
  minimum: simple('Min'),
  equal: simple('Equal'),
  less: simple('Less'),
  greater: simple('Greater'),
  and: simple('And'),
  or: simple('Or'),
  not: simple('Not'),
  where: simple('Where'),
  neg: simple('Neg'),
  exp: simple('Exp'),
  log: simple('Log'),
  sqrt: simple('Sqrt'),
  tanh: simple('Tanh'),
  erf: simple('Erf'),
  // volution's Gelu kernel where the session has it, unless ONNX Runtime fuses its own with the
  // producer; else ONNX Runtime's contrib Gelu (float only) with contrib ops; standard ONNX
  // (opset < 20) has no Gelu, so portable files get x·(1 + erf(x/√2))·0.5 in exactly the node
  // pattern ORT's GeluFusion turns back into its kernel at load time.
  gelu: (ctx, node, [x]) => {
    const { dtype } = node.inputs[0]!;
    if (ctx.fusedKernel(node) && !ortFusesGelu(ctx, node.inputs[0]!)) return ctx.node('Gelu', [x!], {}, 1, VOLUTION_DOMAIN);
    if (ctx.contribOps && dtype === 'float32') return ctx.node('Gelu', [x!], {}, 1, MS_DOMAIN);
    const [scaled] = ctx.node('Div', [x!, ctx.scalar(Math.SQRT2, dtype)]);
    const [e] = ctx.node('Erf', [scaled!]);
    const [onePlus] = ctx.node('Add', [e!, ctx.scalar(1, dtype)]);
    const [xy] = ctx.node('Mul', [x!, onePlus!]);
    return ctx.node('Mul', [xy!, ctx.scalar(0.5, dtype)]);
  },
  // One fused kernel where the session has volution's kernels; otherwise eight passes:
  // gelu'(x) = Φ(x) + x·φ(x), with u = x/√2, Φ = 0.5·erf(u) + 0.5 (a HardSigmoid pass: it never
  // clips, as erf ∈ [−1, 1]) and x·φ(x) = u·e^(−u²)/√π, written as a division by e^(u²), which
  // saves a negation (it overflows to inf only where the term is below float32's range anyway).
  gelu_grad: (ctx, node, [x, g]) => {
    const { dtype } = node.inputs[0]!;
    if (ctx.fusedKernel(node)) return ctx.node('GeluGrad', [g!, x!], {}, 1, VOLUTION_DOMAIN);
    const [u] = ctx.node('Mul', [x!, ctx.scalar(Math.SQRT1_2, dtype)]);
    const [e] = ctx.node('Erf', [u!]);
    const [cdf] = dtype === 'float32'
      ? ctx.node('HardSigmoid', [e!], { alpha: { float: 0.5 }, beta: { float: 0.5 } })
      : ctx.node('Add', [ctx.node('Mul', [e!, ctx.scalar(0.5, dtype)])[0]!, ctx.scalar(0.5, dtype)]);
    const [uu] = ctx.node('Mul', [u!, u!]);
    const [eu] = ctx.node('Exp', [uu!]);
    const [t] = ctx.node('Div', [u!, eu!]);
    const [slope] = emitScalarScaledAdd(ctx, cdf!, t!, 1 / Math.sqrt(Math.PI), node.inputs[0]!);
    return ctx.node('Mul', [g!, slope!]);
  },
  // ONNX Runtime has HardSigmoid for float only: float64 graphs spell it out.
  hard_sigmoid: (ctx, node, [x]) => {
    const { alpha, beta } = attrsOf(node, 'hard_sigmoid');
    const { dtype } = node.inputs[0]!;
    if (dtype === 'float32') return ctx.node('HardSigmoid', [x!], { alpha: { float: alpha }, beta: { float: beta } });
    const [scaled] = ctx.node('Mul', [x!, ctx.scalar(alpha, dtype)]);
    const [shifted] = ctx.node('Add', [scaled!, ctx.scalar(beta, dtype)]);
    return ctx.node('Clip', [shifted!, ctx.scalar(0, dtype), ctx.scalar(1, dtype)]);
  },
  sigmoid: simple('Sigmoid'),
  relu: simple('Relu'),
  abs: simple('Abs'),
  sign: simple('Sign'),
  cast: (ctx, node, inputs) => ctx.node('Cast', inputs, { to: { int: ONNX_DTYPE_CODE[attrsOf(node, 'cast').to] } }),
  constant: (ctx, node) => [ctx.constant(attrsOf(node, 'constant').value)],
};
