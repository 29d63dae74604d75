/**
 * The primitive op table: for each op, its attributes (typed), its arity and
 * its shape inference with attribute validation. Pure data, no execution.
 *
 * The set is kept small on purpose (tinygrad-style): composites such as
 * roll, split, mean over several axes or global pooling are built from these
 * in `tensor/`. A composite becomes a primitive only where that buys speed
 * (GELU: ONNX Runtime's one fused kernel even in training graphs, where the
 * backward pass would otherwise keep the composite's intermediates alive and
 * unfused). Every primitive has a reference kernel (`backends/reference/kernels.ts`),
 * an ONNX emission (`backends/onnx/emit.ts`) and a vector-Jacobian rule
 * (`autodiff/rules.ts`).
 */
import { AttributeError, ShapeError, fmtShape } from '../errors.js';
import { type DType, DTYPES, NDArray, isFloat, numel, sameShape } from './ndarray.js';
import type { ValueType } from './graph.js';

type Pair = readonly [number, number];
type Quad = readonly [number, number, number, number];

export interface ConvAttrs {
  /** [sh, sw] */
  stride: Pair;
  /** [top, left, bottom, right] (ONNX order) */
  padding: Quad;
  /** [dh, dw] */
  dilation: Pair;
  groups: number;
}

export interface WindowAttrs {
  kernel: Pair;
  stride: Pair;
  padding: Quad;
  dilation: Pair;
}

/** Attributes of every primitive, by op name. */
export interface OpAttrs {
  // elementwise, broadcasting
  add: {}; sub: {}; mul: {}; div: {}; pow: {}; maximum: {}; minimum: {};
  equal: {}; less: {}; greater: {};
  and: {}; or: {}; not: {};
  where: {};
  neg: {}; exp: {}; log: {}; sqrt: {}; tanh: {}; erf: {}; sigmoid: {}; relu: {}; abs: {}; sign: {};
  /** Exact GELU, x·Φ(x) = 0.5·x·(1 + erf(x/√2)). */
  gelu: {};
  /** GELU's vector-Jacobian product: g·gelu'(x) = g·(Φ(x) + x·φ(x)), inputs [x, g]. One fused kernel where the runtime has it. */
  gelu_grad: {};
  /** clamp(alpha·x + beta, 0, 1); with alpha = 1/6, beta = 1/2 it is PyTorch's hardsigmoid. */
  hard_sigmoid: { alpha: number; beta: number };
  cast: { to: DType };
  constant: { value: NDArray };
  // linear algebra and convolution
  matmul: {};
  conv2d: ConvAttrs;
  conv_transpose2d: ConvAttrs & { outputPadding: Pair };
  /** Outputs: the maxima, and the int64 flat index into the whole input of each (the first maximum in row-major window order). */
  max_pool2d: { kernel: Pair; stride: Pair; padding: Quad };
  /**
   * max_pool2d's vector-Jacobian product, inputs [x, g]: each window's cotangent added at its first maximum
   * (as the forward's indices). One fused kernel where the runtime has it.
   */
  max_pool2d_grad: { kernel: Pair; stride: Pair; padding: Quad };
  avg_pool2d: { kernel: Pair; stride: Pair; padding: Quad; countIncludePad: boolean };
  unfold: WindowAttrs;
  fold: WindowAttrs & { outputSize: Pair };
  // layout
  reshape: { shape: readonly number[] };
  transpose: { perm: readonly number[] };
  slice: { starts: readonly number[]; ends: readonly number[]; axes: readonly number[]; steps: readonly number[] };
  concat: { axis: number };
  pad: { pads: readonly number[]; mode: 'constant' | 'reflect'; value: number };
  expand: { shape: readonly number[] };
  gather: { axis: number };
  gather_elements: { axis: number };
  scatter_add: { axis: number };
  // reductions and normalisation
  reduce_sum: { axes: readonly number[]; keepdims: boolean };
  reduce_mean: { axes: readonly number[]; keepdims: boolean };
  reduce_max: { axes: readonly number[]; keepdims: boolean };
  softmax: { axis: number };
  log_softmax: { axis: number };
  layer_norm: { axis: number; epsilon: number };
  /**
   * layer_norm's vector-Jacobian product from its saved statistics: inputs [x, g, mean, 1/std, weight?],
   * outputs the cotangents of x, of the weight and of the bias. One fused kernel where the runtime has it.
   */
  layer_norm_grad: { axis: number };
  batch_norm: { epsilon: number };
  batch_norm_train: { epsilon: number };
  /**
   * batch_norm_train's vector-Jacobian product from its batch statistics: inputs [x, g, mean, variance, weight?],
   * outputs the cotangents of x, of the weight and of the bias. One fused kernel where the runtime has it.
   */
  batch_norm_train_grad: { epsilon: number };
  topk: { k: number; axis: number; largest: boolean };
  // fusions (made by inference passes, never by tracing; no VJP rule)
  /**
   * Multi-head self-attention of x [B, N, C] with one qkv projection w [C, 3C] + b [3C] (channels (3, heads, C/heads)):
   * softmax(q·kᵀ·scale)·v per head, heads concatenated → [B, N, C]. `fuseAttention` makes it from the traced ops.
   */
  self_attention: { heads: number; scale: number };
}

export type OpName = keyof OpAttrs;
export type AttrsOf<K extends OpName> = Readonly<OpAttrs[K]>;

export interface OpSpec<K extends OpName> {
  /** Number of inputs: exact, or [min, max] for optional trailing inputs. */
  readonly arity: number | Pair;
  infer(inputs: readonly ValueType[], attrs: AttrsOf<K>): ValueType[];
}

// ---------------------------------------------------------------- helpers

function fail(msg: string): never {
  throw new ShapeError(msg);
}

function badAttr(msg: string): never {
  throw new AttributeError(msg);
}

function checkArity(n: number, arity: number | Pair): void {
  const [lo, hi] = typeof arity === 'number' ? [arity, arity] : arity;
  if (n < lo || n > hi) fail(`expects ${lo === hi ? lo : `${lo} to ${hi}`} inputs, got ${n}`);
}

function intAttr(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) badAttr(`attribute '${name}' must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function intList(name: string, v: unknown, len: number | undefined, min: number): readonly number[] {
  if (!Array.isArray(v) || (len !== undefined && v.length !== len) || v.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < min)) {
    badAttr(`attribute '${name}' must be a list of ${len ?? 'n'} integers ≥ ${min}, got ${JSON.stringify(v)}`);
  }
  return v as readonly number[];
}

/** Normalises a possibly negative axis; throws on out-of-range. */
export function normAxis(axis: number, rank: number, name = 'axis'): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) badAttr(`${name} ${axis} is out of range for rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) fail(`shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast (dimension ${i - n}: ${da} vs ${db})`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

function sameDtype(inputs: readonly ValueType[]): DType {
  const d = inputs[0]!.dtype;
  for (const v of inputs) if (v.dtype !== d) fail(`dtypes differ (${inputs.map((x) => x.dtype).join(' vs ')}); cast one side first`);
  return d;
}

function requireFloat(v: ValueType, what = 'input'): void {
  if (!isFloat(v.dtype)) fail(`${what} must be float32 or float64, got ${v.dtype}`);
}

const binaryFloat: OpSpec<'add'> = {
  arity: 2,
  infer([a, b]) {
    const dtype = sameDtype([a!, b!]);
    if (dtype === 'bool') fail('arithmetic on bool tensors; cast to float first');
    return [{ dtype, shape: broadcastShapes(a!.shape, b!.shape) }];
  },
};

const comparison: OpSpec<'equal'> = {
  arity: 2,
  infer([a, b]) {
    sameDtype([a!, b!]);
    return [{ dtype: 'bool', shape: broadcastShapes(a!.shape, b!.shape) }];
  },
};

const logical: OpSpec<'and'> = {
  arity: 2,
  infer([a, b]) {
    if (a!.dtype !== 'bool' || b!.dtype !== 'bool') fail('logical ops take bool tensors');
    return [{ dtype: 'bool', shape: broadcastShapes(a!.shape, b!.shape) }];
  },
};

const unaryFloat: OpSpec<'exp'> = {
  arity: 1,
  infer([x]) {
    requireFloat(x!);
    return [{ dtype: x!.dtype, shape: x!.shape }];
  },
};

function reduction(name: string): OpSpec<'reduce_sum'> {
  return {
    arity: 1,
    infer([x], { axes, keepdims }) {
      if (name !== 'reduce_max') requireFloat(x!);
      const rank = x!.shape.length;
      const norm = new Set(axes.map((a) => normAxis(a, rank, 'reduction axis')));
      if (norm.size !== axes.length) badAttr(`reduction axes ${JSON.stringify(axes)} repeat an axis`);
      if (norm.size === 0) badAttr('reduction needs at least one axis');
      const shape: number[] = [];
      x!.shape.forEach((d, i) => {
        if (norm.has(i)) {
          if (d === 0 && name === 'reduce_max') fail(`cannot take the max over an empty axis ${i}`);
          if (keepdims) shape.push(1);
        } else shape.push(d);
      });
      return [{ dtype: x!.dtype, shape }];
    },
  };
}

/** A depthwise conv: one channel per group and one filter per channel (weight [C, 1, kh, kw], groups = C). */
export function isDepthwise(inputChannels: number, weightShape: readonly number[], groups: number): boolean {
  return groups === inputChannels && weightShape[0] === groups && weightShape[1] === 1;
}

/** Output spatial size of a sliding window. */
export function windowOut(size: number, k: number, s: number, padBegin: number, padEnd: number, d = 1): number {
  return Math.floor((size + padBegin + padEnd - d * (k - 1) - 1) / s) + 1;
}

function checkWindow(kernel: unknown, stride: unknown, padding: unknown, dilation: unknown = [1, 1]): void {
  intList('kernel', kernel, 2, 1);
  intList('stride', stride, 2, 1);
  intList('padding', padding, 4, 0);
  intList('dilation', dilation, 2, 1);
}

function spatialOut(x: ValueType, a: WindowAttrs, what: string): [number, number] {
  const [h, w] = [x.shape[2]!, x.shape[3]!];
  const ho = windowOut(h, a.kernel[0], a.stride[0], a.padding[0], a.padding[2], a.dilation[0]);
  const wo = windowOut(w, a.kernel[1], a.stride[1], a.padding[1], a.padding[3], a.dilation[1]);
  if (ho < 1 || wo < 1) {
    fail(`${what}: a ${a.kernel[0]}×${a.kernel[1]} window (dilation ${a.dilation.join('×')}, padding ${a.padding.join(',')}) does not fit a ${h}×${w} input`);
  }
  return [ho, wo];
}

function require4d(x: ValueType, what: string): void {
  if (x.shape.length !== 4) fail(`${what} expects an NCHW input of rank 4, got ${fmtShape(x.shape)}`);
}

const pool: OpSpec<'max_pool2d'> = {
  arity: 1,
  infer([x], a) {
    require4d(x!, 'pooling');
    requireFloat(x!);
    checkWindow(a.kernel, a.stride, a.padding);
    for (let i = 0; i < 2; i++) {
      if (a.padding[i]! * 2 > a.kernel[i]! || a.padding[i + 2]! * 2 > a.kernel[i]!) badAttr(`pooling padding ${a.padding.join(',')} must be at most half the kernel ${a.kernel.join('×')}`);
    }
    const [ho, wo] = spatialOut(x!, { ...a, dilation: [1, 1] }, 'pooling');
    return [{ dtype: x!.dtype, shape: [x!.shape[0]!, x!.shape[1]!, ho, wo] }];
  },
};

const maxPool: OpSpec<'max_pool2d'> = {
  arity: 1,
  infer(inputs, a) {
    const [y] = pool.infer(inputs, a);
    return [y!, { dtype: 'int64', shape: y!.shape }];
  },
};

const maxPoolGrad: OpSpec<'max_pool2d_grad'> = {
  arity: 2,
  infer([x, g], a) {
    const [y] = pool.infer([x!], a);
    sameDtype([x!, g!]);
    if (!sameShape(g!.shape, y!.shape)) fail(`max_pool2d_grad: the cotangent ${fmtShape(g!.shape)} must have the pooled shape ${fmtShape(y!.shape)}`);
    return [x!];
  },
};

// ---------------------------------------------------------------- the table

export const OPS: { readonly [K in OpName]: OpSpec<K> } = {
  add: binaryFloat,
  sub: binaryFloat,
  mul: binaryFloat,
  div: binaryFloat,
  pow: {
    arity: 2,
    infer([a, b]) {
      requireFloat(a!);
      return binaryFloat.infer([a!, b!], {});
    },
  },
  maximum: binaryFloat,
  minimum: binaryFloat,
  equal: comparison,
  less: comparison,
  greater: comparison,
  and: logical,
  or: logical,
  not: {
    arity: 1,
    infer([x]) {
      if (x!.dtype !== 'bool') fail('not takes a bool tensor');
      return [x!];
    },
  },
  where: {
    arity: 3,
    infer([c, a, b]) {
      if (c!.dtype !== 'bool') fail(`condition must be bool, got ${c!.dtype}`);
      const dtype = sameDtype([a!, b!]);
      return [{ dtype, shape: broadcastShapes(c!.shape, broadcastShapes(a!.shape, b!.shape)) }];
    },
  },
  neg: unaryFloat,
  exp: unaryFloat,
  log: unaryFloat,
  sqrt: unaryFloat,
  tanh: unaryFloat,
  erf: unaryFloat,
  gelu: unaryFloat,
  gelu_grad: {
    arity: 2,
    infer([x, g]) {
      requireFloat(x!);
      const dtype = sameDtype([x!, g!]);
      if (!sameShape(x!.shape, g!.shape)) fail(`gelu_grad: x ${fmtShape(x!.shape)} and its cotangent ${fmtShape(g!.shape)} differ in shape`);
      return [{ dtype, shape: x!.shape }];
    },
  },
  hard_sigmoid: {
    arity: 1,
    infer([x], { alpha, beta }) {
      requireFloat(x!);
      if (!Number.isFinite(alpha) || !Number.isFinite(beta)) badAttr(`hard_sigmoid alpha and beta must be finite numbers, got ${alpha} and ${beta}`);
      return [{ dtype: x!.dtype, shape: x!.shape }];
    },
  },
  sigmoid: unaryFloat,
  relu: unaryFloat,
  abs: unaryFloat,
  sign: unaryFloat,
  cast: {
    arity: 1,
    infer([x], { to }) {
      if (!DTYPES.includes(to)) badAttr(`cast target must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(to)}`);
      return [{ dtype: to, shape: x!.shape }];
    },
  },
  constant: {
    arity: 0,
    infer(_, { value }) {
      if (!(value instanceof NDArray)) badAttr('constant needs an NDArray value');
      value.assertFinite('constant');
      return [{ dtype: value.dtype, shape: value.shape }];
    },
  },

  matmul: {
    arity: 2,
    infer([a, b]) {
      requireFloat(a!);
      const dtype = sameDtype([a!, b!]);
      if (a!.shape.length < 2 || b!.shape.length < 2) fail(`matmul needs operands of rank ≥ 2, got ${fmtShape(a!.shape)} @ ${fmtShape(b!.shape)}`);
      const [m, k] = a!.shape.slice(-2) as [number, number];
      const [k2, n] = b!.shape.slice(-2) as [number, number];
      if (k !== k2) fail(`matmul inner dimensions differ: ${fmtShape(a!.shape)} @ ${fmtShape(b!.shape)} (${k} vs ${k2})`);
      const batch = broadcastShapes(a!.shape.slice(0, -2), b!.shape.slice(0, -2));
      return [{ dtype, shape: [...batch, m, n] }];
    },
  },
  conv2d: {
    arity: [2, 3],
    infer([x, w, b], a) {
      require4d(x!, 'conv2d');
      requireFloat(x!);
      sameDtype(b ? [x!, w!, b] : [x!, w!]);
      checkWindow([1, 1], a.stride, a.padding, a.dilation);
      const g = intAttr('groups', a.groups, 1);
      if (w!.shape.length !== 4) fail(`conv2d weight must be [out, in/groups, kh, kw], got ${fmtShape(w!.shape)}`);
      const [cout, cinG, kh, kw] = w!.shape as [number, number, number, number];
      const cin = x!.shape[1]!;
      if (cin % g !== 0 || cout % g !== 0) fail(`conv2d: groups ${g} must divide in channels ${cin} and out channels ${cout}`);
      if (cinG * g !== cin) fail(`conv2d: weight ${fmtShape(w!.shape)} expects ${cinG * g} input channels (groups ${g}), input has ${cin}`);
      if (b && (b.shape.length !== 1 || b.shape[0] !== cout)) fail(`conv2d: bias must be [${cout}], got ${fmtShape(b.shape)}`);
      const [ho, wo] = spatialOut(x!, { kernel: [kh, kw], stride: a.stride, padding: a.padding, dilation: a.dilation }, 'conv2d');
      return [{ dtype: x!.dtype, shape: [x!.shape[0]!, cout, ho, wo] }];
    },
  },
  conv_transpose2d: {
    arity: [2, 3],
    infer([x, w, b], a) {
      require4d(x!, 'conv_transpose2d');
      requireFloat(x!);
      sameDtype(b ? [x!, w!, b] : [x!, w!]);
      checkWindow([1, 1], a.stride, a.padding, a.dilation);
      intList('outputPadding', a.outputPadding, 2, 0);
      const g = intAttr('groups', a.groups, 1);
      if (w!.shape.length !== 4) fail(`conv_transpose2d weight must be [in, out/groups, kh, kw], got ${fmtShape(w!.shape)}`);
      const [cin, coutG, kh, kw] = w!.shape as [number, number, number, number];
      if (x!.shape[1] !== cin) fail(`conv_transpose2d: weight ${fmtShape(w!.shape)} expects ${cin} input channels, input has ${x!.shape[1]}`);
      if (cin % g !== 0) fail(`conv_transpose2d: groups ${g} must divide in channels ${cin}`);
      const cout = coutG * g;
      if (b && (b.shape.length !== 1 || b.shape[0] !== cout)) fail(`conv_transpose2d: bias must be [${cout}], got ${fmtShape(b.shape)}`);
      const out = [0, 1].map((i) => {
        const op = a.outputPadding[i]!;
        if (op >= Math.max(a.stride[i]!, a.dilation[i]!)) badAttr(`outputPadding ${op} must be smaller than the stride or the dilation`);
        return (x!.shape[2 + i]! - 1) * a.stride[i]! - a.padding[i]! - a.padding[i + 2]! + a.dilation[i]! * ((i ? kw : kh) - 1) + op + 1;
      });
      if (out[0]! < 1 || out[1]! < 1) fail(`conv_transpose2d output would be empty (${out.join('×')})`);
      return [{ dtype: x!.dtype, shape: [x!.shape[0]!, cout, out[0]!, out[1]!] }];
    },
  },
  max_pool2d: maxPool,
  max_pool2d_grad: maxPoolGrad,
  avg_pool2d: pool as OpSpec<'avg_pool2d'>,
  unfold: {
    arity: 1,
    infer([x], a) {
      require4d(x!, 'unfold');
      requireFloat(x!);
      checkWindow(a.kernel, a.stride, a.padding, a.dilation);
      const [ho, wo] = spatialOut(x!, a, 'unfold');
      return [{ dtype: x!.dtype, shape: [x!.shape[0]!, x!.shape[1]! * a.kernel[0] * a.kernel[1], ho * wo] }];
    },
  },
  fold: {
    arity: 1,
    infer([x], a) {
      requireFloat(x!);
      checkWindow(a.kernel, a.stride, a.padding, a.dilation);
      intList('outputSize', a.outputSize, 2, 1);
      if (x!.shape.length !== 3) fail(`fold expects [N, C·kh·kw, L], got ${fmtShape(x!.shape)}`);
      const kk = a.kernel[0] * a.kernel[1];
      if (x!.shape[1]! % kk !== 0) fail(`fold: channel dimension ${x!.shape[1]} is not a multiple of the kernel area ${kk}`);
      const [oh, ow] = a.outputSize;
      const [ho, wo] = spatialOut({ dtype: x!.dtype, shape: [1, 1, oh, ow] }, a, 'fold');
      if (ho * wo !== x!.shape[2]) fail(`fold: ${x!.shape[2]} blocks given, but a ${oh}×${ow} output has ${ho}×${wo} = ${ho * wo}`);
      return [{ dtype: x!.dtype, shape: [x!.shape[0]!, x!.shape[1]! / kk, oh, ow] }];
    },
  },

  reshape: {
    arity: 1,
    infer([x], { shape }) {
      intList('shape', shape, undefined, 0);
      if (numel(shape) !== numel(x!.shape)) fail(`cannot reshape ${fmtShape(x!.shape)} (${numel(x!.shape)} elements) to ${fmtShape(shape)} (${numel(shape)} elements)`);
      return [{ dtype: x!.dtype, shape: [...shape] }];
    },
  },
  transpose: {
    arity: 1,
    infer([x], { perm }) {
      const r = x!.shape.length;
      intList('perm', perm, r, 0);
      if (new Set(perm).size !== r || perm.some((p) => p >= r)) badAttr(`perm ${JSON.stringify(perm)} is not a permutation of 0..${r - 1}`);
      return [{ dtype: x!.dtype, shape: perm.map((p) => x!.shape[p]!) }];
    },
  },
  slice: {
    arity: 1,
    infer([x], { starts, ends, axes, steps }) {
      const r = x!.shape.length;
      const n = axes.length;
      intList('axes', axes, n, 0);
      intList('starts', starts, n, 0);
      intList('ends', ends, n, 0);
      intList('steps', steps, n, 1);
      if (new Set(axes).size !== n) badAttr(`slice axes ${JSON.stringify(axes)} repeat an axis`);
      const shape = [...x!.shape];
      axes.forEach((ax, i) => {
        if (ax >= r) badAttr(`slice axis ${ax} out of range for rank ${r}`);
        const d = x!.shape[ax]!;
        if (starts[i]! > d || ends[i]! > d) fail(`slice ${starts[i]}:${ends[i]} out of bounds for axis ${ax} of size ${d}`);
        shape[ax] = Math.max(0, Math.ceil((ends[i]! - starts[i]!) / steps[i]!));
      });
      return [{ dtype: x!.dtype, shape }];
    },
  },
  concat: {
    arity: [1, Infinity] as unknown as Pair,
    infer(inputs, { axis }) {
      const dtype = sameDtype(inputs);
      const first = inputs[0]!;
      const r = first.shape.length;
      const ax = normAxis(axis, r);
      let total = 0;
      for (const v of inputs) {
        if (v.shape.length !== r || v.shape.some((d, i) => i !== ax && d !== first.shape[i])) {
          fail(`concat along axis ${ax}: shapes ${inputs.map((u) => fmtShape(u.shape)).join(', ')} differ outside that axis`);
        }
        total += v.shape[ax]!;
      }
      const shape = [...first.shape];
      shape[ax] = total;
      return [{ dtype, shape }];
    },
  },
  pad: {
    arity: 1,
    infer([x], { pads, mode, value }) {
      const r = x!.shape.length;
      intList('pads', pads, 2 * r, 0);
      if (mode !== 'constant' && mode !== 'reflect') badAttr(`pad mode must be 'constant' or 'reflect', got ${JSON.stringify(mode)}`);
      if (!Number.isFinite(value)) badAttr(`pad value must be finite, got ${value}`);
      const shape = x!.shape.map((d, i) => {
        if (mode === 'reflect' && (pads[i]! >= d || pads[i + r]! >= d)) {
          fail(`reflect padding (${pads[i]}, ${pads[i + r]}) must be smaller than the dimension ${d} of axis ${i}`);
        }
        return d + pads[i]! + pads[i + r]!;
      });
      return [{ dtype: x!.dtype, shape }];
    },
  },
  expand: {
    arity: 1,
    infer([x], { shape }) {
      intList('shape', shape, undefined, 0);
      if (shape.length < x!.shape.length) fail(`cannot expand ${fmtShape(x!.shape)} to the lower rank ${fmtShape(shape)}`);
      const out = broadcastShapes(x!.shape, shape);
      if (out.some((d, i) => d !== shape[i])) fail(`cannot expand ${fmtShape(x!.shape)} to ${fmtShape(shape)}: only size-1 dimensions can grow`);
      return [{ dtype: x!.dtype, shape: out }];
    },
  },
  gather: {
    arity: 2,
    infer([x, idx], { axis }) {
      if (idx!.dtype !== 'int64') fail(`gather indices must be int64, got ${idx!.dtype}`);
      const ax = normAxis(axis, x!.shape.length);
      return [{ dtype: x!.dtype, shape: [...x!.shape.slice(0, ax), ...idx!.shape, ...x!.shape.slice(ax + 1)] }];
    },
  },
  gather_elements: {
    arity: 2,
    infer([x, idx], { axis }) {
      if (idx!.dtype !== 'int64') fail(`gather_elements indices must be int64, got ${idx!.dtype}`);
      const ax = normAxis(axis, x!.shape.length);
      if (idx!.shape.length !== x!.shape.length || idx!.shape.some((d, i) => i !== ax && d > x!.shape[i]!)) {
        fail(`gather_elements: indices ${fmtShape(idx!.shape)} must have the rank of the data ${fmtShape(x!.shape)} and no larger dimension outside axis ${ax}`);
      }
      return [{ dtype: x!.dtype, shape: idx!.shape }];
    },
  },
  scatter_add: {
    arity: 3,
    infer([x, idx, upd], { axis }) {
      if (idx!.dtype !== 'int64') fail(`scatter_add indices must be int64, got ${idx!.dtype}`);
      sameDtype([x!, upd!]);
      const ax = normAxis(axis, x!.shape.length);
      if (idx!.shape.length !== x!.shape.length || idx!.shape.some((d, i) => d !== upd!.shape[i] || (i !== ax && d > x!.shape[i]!))) {
        fail(`scatter_add: indices ${fmtShape(idx!.shape)} and updates ${fmtShape(upd!.shape)} must match and fit the data ${fmtShape(x!.shape)} outside axis ${ax}`);
      }
      return [{ dtype: x!.dtype, shape: x!.shape }];
    },
  },

  reduce_sum: reduction('reduce_sum'),
  reduce_mean: reduction('reduce_mean'),
  reduce_max: reduction('reduce_max'),
  softmax: {
    arity: 1,
    infer([x], { axis }) {
      requireFloat(x!);
      normAxis(axis, x!.shape.length);
      return [x!];
    },
  },
  log_softmax: {
    arity: 1,
    infer([x], { axis }) {
      requireFloat(x!);
      normAxis(axis, x!.shape.length);
      return [x!];
    },
  },
  self_attention: {
    arity: 3,
    infer([x, w, b], { heads, scale }) {
      requireFloat(x!);
      intAttr('heads', heads, 1);
      if (!(scale > 0)) badAttr(`self_attention scale must be > 0, got ${scale}`);
      if (x!.shape.length !== 3) fail(`self_attention expects tokens [B, N, C], got ${fmtShape(x!.shape)}`);
      const c = x!.shape[2]!;
      if (c % heads) fail(`self_attention: ${c} channels do not split into ${heads} heads`);
      if (w!.shape.join() !== [c, 3 * c].join() || b!.shape.join() !== String(3 * c)) fail(`self_attention: weight ${fmtShape(w!.shape)} and bias ${fmtShape(b!.shape)} must be [${c}, ${3 * c}] and [${3 * c}]`);
      return [x!];
    },
  },
  layer_norm: {
    arity: [1, 3],
    infer([x, w, b], { axis, epsilon }) {
      requireFloat(x!);
      const r = x!.shape.length;
      const ax = normAxis(axis, r);
      if (!(epsilon > 0)) badAttr(`layer_norm epsilon must be > 0, got ${epsilon}`);
      const normShape = x!.shape.slice(ax);
      for (const p of [w, b]) {
        if (p && (p.shape.length !== normShape.length || p.shape.some((d, i) => d !== normShape[i]))) {
          fail(`layer_norm: weight/bias ${fmtShape(p.shape)} must equal the normalised shape ${fmtShape(normShape)}`);
        }
      }
      // y, and the per-row mean and 1/sqrt(var + eps) (kept for the backward pass, as ONNX's optional outputs)
      const stat = { dtype: x!.dtype, shape: x!.shape.map((d, i) => (i < ax ? d : 1)) };
      return [x!, stat, stat];
    },
  },
  layer_norm_grad: {
    arity: [4, 5],
    infer([x, g, mean, rstd, w], { axis }) {
      requireFloat(x!);
      sameDtype([x!, g!, mean!, rstd!, ...(w ? [w] : [])]);
      const ax = normAxis(axis, x!.shape.length);
      const statShape = x!.shape.map((d, i) => (i < ax ? d : 1));
      const normShape = x!.shape.slice(ax);
      if (!sameShape(g!.shape, x!.shape)) fail(`layer_norm_grad: x ${fmtShape(x!.shape)} and its cotangent ${fmtShape(g!.shape)} differ in shape`);
      for (const s of [mean!, rstd!]) if (!sameShape(s.shape, statShape)) fail(`layer_norm_grad: the statistics must be ${fmtShape(statShape)}, got ${fmtShape(s.shape)}`);
      if (w && !sameShape(w.shape, normShape)) fail(`layer_norm_grad: weight ${fmtShape(w.shape)} must equal the normalised shape ${fmtShape(normShape)}`);
      const param = { dtype: x!.dtype, shape: normShape };
      return [x!, param, param];
    },
  },
  batch_norm: {
    arity: 5,
    infer([x, ...stats], { epsilon }) {
      const c = channelsOf(x!, 'batch_norm', epsilon);
      for (const s of stats) if (s.shape.length !== 1 || s.shape[0] !== c) fail(`batch_norm: weight, bias, mean and var must be [${c}], got ${fmtShape(s.shape)}`);
      return [x!];
    },
  },
  batch_norm_train: {
    arity: 3,
    infer([x, w, b], { epsilon }) {
      const c = channelsOf(x!, 'batch_norm_train', epsilon);
      for (const s of [w!, b!]) if (s.shape.length !== 1 || s.shape[0] !== c) fail(`batch_norm: weight and bias must be [${c}], got ${fmtShape(s.shape)}`);
      if (numel(x!.shape) / c < 2) fail(`batch_norm in train mode needs more than one value per channel, got input ${fmtShape(x!.shape)}`);
      // y, batch mean, biased batch variance
      const stat = { dtype: x!.dtype, shape: [c] };
      return [x!, stat, stat];
    },
  },
  batch_norm_train_grad: {
    arity: [4, 5],
    infer([x, g, mean, variance, w], { epsilon }) {
      const c = channelsOf(x!, 'batch_norm_train_grad', epsilon);
      sameDtype([x!, g!, mean!, variance!, ...(w ? [w] : [])]);
      if (!sameShape(g!.shape, x!.shape)) fail(`batch_norm_train_grad: x ${fmtShape(x!.shape)} and its cotangent ${fmtShape(g!.shape)} differ in shape`);
      for (const s of [mean!, variance!, ...(w ? [w] : [])]) if (s.shape.length !== 1 || s.shape[0] !== c) fail(`batch_norm_train_grad: mean, variance and weight must be [${c}], got ${fmtShape(s.shape)}`);
      const stat = { dtype: x!.dtype, shape: [c] };
      return [x!, stat, stat];
    },
  },
  topk: {
    arity: 1,
    infer([x], { k, axis }) {
      const ax = normAxis(axis, x!.shape.length);
      intAttr('k', k, 1);
      if (k > x!.shape[ax]!) fail(`topk: k = ${k} is larger than axis ${ax} of size ${x!.shape[ax]}`);
      const shape = [...x!.shape];
      shape[ax] = k;
      return [{ dtype: x!.dtype, shape }, { dtype: 'int64', shape }];
    },
  },
};

/** The channel count of a batch norm's input [N, C, ...], after checking it and epsilon. */
function channelsOf(x: ValueType, op: string, epsilon: number): number {
  requireFloat(x);
  if (x.shape.length < 2) fail(`${op} expects [N, C, ...], got ${fmtShape(x.shape)}`);
  if (!(epsilon > 0)) badAttr(`${op} epsilon must be > 0, got ${epsilon}`);
  return x.shape[1]!;
}

/** Checks an input count against an op's arity (used by the graph builder). */
export function checkOpArity(op: OpName, n: number): void {
  checkArity(n, OPS[op].arity);
}
