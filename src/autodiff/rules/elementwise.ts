import { geluGrad, where } from '../../tensor/tensor.js';
import type { RuleTable, VjpRule } from './types.js';
import { unbroadcast } from './util.js';

/** Comparisons, logic and integer ops carry no gradient. */
const none: VjpRule<'equal'> = () => [];

export const elementwiseRules: RuleTable<
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'equal' | 'less' | 'greater' | 'and' | 'or' | 'not' | 'where'
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'tanh' | 'erf' | 'gelu' | 'gelu_grad' | 'hard_sigmoid' | 'sigmoid' | 'relu' | 'abs' | 'sign' | 'cast' | 'constant'
> = {
  add: ({ inputs: [a, b], needs }, [g]) => [needs[0] ? unbroadcast(g!, a!.shape) : undefined, needs[1] ? unbroadcast(g!, b!.shape) : undefined],
  sub: ({ inputs: [a, b], needs }, [g]) => [needs[0] ? unbroadcast(g!, a!.shape) : undefined, needs[1] ? unbroadcast(g!.neg(), b!.shape) : undefined],
  mul: ({ inputs: [a, b], needs }, [g]) => [needs[0] ? unbroadcast(g!.mul(b!), a!.shape) : undefined, needs[1] ? unbroadcast(g!.mul(a!), b!.shape) : undefined],
  div: ({ inputs: [a, b], outputs: [y], needs }, [g]) => {
    const ga = g!.div(b!);
    return [needs[0] ? unbroadcast(ga, a!.shape) : undefined, needs[1] ? unbroadcast(ga.mul(y!).neg(), b!.shape) : undefined];
  },
  pow: ({ inputs: [a, b], outputs: [y], needs }, [g]) => [
    needs[0] ? unbroadcast(g!.mul(b!).mul(a!.pow(b!.sub(1))), a!.shape) : undefined,
    // d/db a^b = a^b·log(a); defined for a > 0 (0 where a == 0, as in PyTorch)
    needs[1] ? unbroadcast(where(a!.eq(0), 0, g!.mul(y!).mul(a!.log())), b!.shape) : undefined,
  ],
  // Ties split the gradient equally, as PyTorch does for maximum/minimum.
  maximum: ({ inputs: [a, b], needs }, [g]) => {
    const wa = a!.gt(b!).cast(g!.dtype).add(a!.eq(b!).cast(g!.dtype).mul(0.5));
    return [needs[0] ? unbroadcast(g!.mul(wa), a!.shape) : undefined, needs[1] ? unbroadcast(g!.mul(wa.neg().add(1)), b!.shape) : undefined];
  },
  minimum: ({ inputs: [a, b], needs }, [g]) => {
    const wa = a!.lt(b!).cast(g!.dtype).add(a!.eq(b!).cast(g!.dtype).mul(0.5));
    return [needs[0] ? unbroadcast(g!.mul(wa), a!.shape) : undefined, needs[1] ? unbroadcast(g!.mul(wa.neg().add(1)), b!.shape) : undefined];
  },
  equal: none,
  less: none,
  greater: none,
  and: none,
  or: none,
  not: none,
  constant: none,
  where: ({ inputs: [c, a, b], needs }, [g]) => [
    undefined,
    needs[1] ? unbroadcast(where(c!, g!, 0), a!.shape) : undefined,
    needs[2] ? unbroadcast(where(c!, 0, g!), b!.shape) : undefined,
  ],
  neg: (_, [g]) => [g!.neg()],
  exp: ({ outputs: [y] }, [g]) => [g!.mul(y!)],
  log: ({ inputs: [x] }, [g]) => [g!.div(x!)],
  sqrt: ({ outputs: [y] }, [g]) => [g!.mul(0.5).div(y!)],
  tanh: ({ outputs: [y] }, [g]) => [g!.mul(y!.mul(y!).neg().add(1))],
  erf: ({ inputs: [x] }, [g]) => [g!.mul(x!.mul(x!).neg().exp().mul(2 / Math.sqrt(Math.PI)))],
  // One op, so that a runtime with a fused kernel runs it in one pass (see its ONNX lowering).
  gelu: ({ inputs: [x] }, [g]) => [geluGrad(x!, g!)],
  // d/dx of g·gelu'(x) is g·gelu''(x) = g·φ(x)·(2 − x²); d/dg is gelu'(x).
  gelu_grad: ({ inputs: [x, g], needs }, [h]) => [
    needs[0] ? h!.mul(g!).mul(x!.mul(x!).mul(-0.5).exp().mul(1 / Math.sqrt(2 * Math.PI))).mul(x!.mul(x!).neg().add(2)) : undefined,
    needs[1] ? geluGrad(x!, h!) : undefined,
  ],
  // Zero where the output is clamped, as PyTorch's hardsigmoid_backward (strict at the kinks).
  hard_sigmoid: ({ outputs: [y], attrs: { alpha } }, [g]) => [where(y!.gt(0).and(y!.lt(1)), g!.mul(alpha), 0)],
  sigmoid: ({ outputs: [y] }, [g]) => [g!.mul(y!.mul(y!.neg().add(1)))],
  relu: ({ inputs: [x] }, [g]) => [where(x!.gt(0), g!, 0)],
  abs: ({ inputs: [x] }, [g]) => [g!.mul(x!.sign())],
  sign: (_, [g]) => [g!.mul(0)],
  cast: ({ inputs: [x] }, [g]) => [g!.cast(x!.dtype)],
};
