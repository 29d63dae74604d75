import { erf } from './erf.js';
import type { Kernel, KernelTable, RefArray } from '../types.js';
import { forEachBroadcast, ref } from './util.js';

function binary(f: (a: number, b: number) => number): Kernel<'add'> {
  return ([a, b], _, [out]) => {
    const y = ref(out!.shape);
    const ad = a!.data;
    const bd = b!.data;
    forEachBroadcast(out!.shape, [a!.shape, b!.shape], (i, [oa, ob]) => (y.data[i] = f(ad[oa!]!, bd[ob!]!)));
    return [y];
  };
}

function unary(f: (x: number) => number): Kernel<'exp'> {
  return ([x]) => [ref(x!.shape, x!.data.map(f))];
}

const b2n = (c: boolean) => (c ? 1 : 0);

/** float32 rounding, applied where a graph value is float32 so the reference matches the dtype contract of cast. */
function castTo(x: RefArray, to: string): RefArray {
  if (to === 'int64') return ref(x.shape, x.data.map(Math.trunc));
  if (to === 'bool') return ref(x.shape, x.data.map((v) => b2n(v !== 0)));
  return ref(x.shape, Float64Array.from(x.data));
}

export const elementwiseKernels: KernelTable<
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'equal' | 'less' | 'greater' | 'and' | 'or' | 'not' | 'where'
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'tanh' | 'erf' | 'gelu' | 'gelu_grad' | 'hard_sigmoid' | 'sigmoid' | 'relu' | 'abs' | 'sign' | 'cast' | 'constant'
> = {
  add: binary((a, b) => a + b),
  sub: binary((a, b) => a - b),
  mul: binary((a, b) => a * b),
  div: binary((a, b) => a / b),
  pow: binary(Math.pow),
  maximum: binary(Math.max),
  minimum: binary(Math.min),
  equal: binary((a, b) => b2n(a === b)),
  less: binary((a, b) => b2n(a < b)),
  greater: binary((a, b) => b2n(a > b)),
  and: binary((a, b) => b2n(a !== 0 && b !== 0)),
  or: binary((a, b) => b2n(a !== 0 || b !== 0)),
  not: unary((x) => b2n(x === 0)),
  where: ([c, a, b], _, [out]) => {
    const y = ref(out!.shape);
    forEachBroadcast(out!.shape, [c!.shape, a!.shape, b!.shape], (i, [oc, oa, ob]) => (y.data[i] = c!.data[oc!] ? a!.data[oa!]! : b!.data[ob!]!));
    return [y];
  },
  neg: unary((x) => -x),
  exp: unary(Math.exp),
  log: unary(Math.log),
  sqrt: unary(Math.sqrt),
  tanh: unary(Math.tanh),
  erf: unary(erf),
  gelu: unary((x) => 0.5 * x * (1 + erf(x / Math.SQRT2))),
  gelu_grad: binary((x, g) => g * (0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp((-x * x) / 2)) / Math.sqrt(2 * Math.PI))),
  hard_sigmoid: ([x], { alpha, beta }) => [ref(x!.shape, x!.data.map((v) => Math.min(1, Math.max(0, alpha * v + beta))))],
  sigmoid: unary((x) => 1 / (1 + Math.exp(-x))),
  relu: unary((x) => (x > 0 ? x : 0)),
  abs: unary(Math.abs),
  sign: unary((x) => Math.sign(x)),
  cast: ([x], { to }) => [castTo(x!, to)],
  constant: (_, { value }) => [ref(value.shape, Float64Array.from(value.toFloat64()))],
};
