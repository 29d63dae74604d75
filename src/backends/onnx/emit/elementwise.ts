import { ONNX_DTYPE_CODE } from '../dtypes.js';
import type { Emitter, EmitterTable } from './types.js';
import { attrsOf } from './types.js';

const simple = (opType: string): Emitter => (ctx, _, inputs) => ctx.node(opType, inputs);

export const elementwiseEmitters: EmitterTable<
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'equal' | 'less' | 'greater' | 'and' | 'or' | 'not' | 'where'
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'tanh' | 'erf' | 'sigmoid' | 'relu' | 'abs' | 'sign' | 'cast' | 'constant'
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
  sigmoid: simple('Sigmoid'),
  relu: simple('Relu'),
  abs: simple('Abs'),
  sign: simple('Sign'),
  cast: (ctx, node, inputs) => ctx.node('Cast', inputs, { to: { int: ONNX_DTYPE_CODE[attrsOf(node, 'cast').to] } }),
  constant: (ctx, node) => [ctx.constant(attrsOf(node, 'constant').value)],
};
