/**
 * The symbolic Tensor: a handle on a value of the active trace, with the
 * PyTorch-like methods models are written with. Every method checks shapes
 * at trace time (the op table's inference) and errors name the op, the
 * shapes and the module path.
 */
import { AttributeError, ShapeError, TraceError, fmtShape } from '../errors.js';
import type { Value } from '../ir/graph.js';
import { type DType, NDArray, numel, sameShape } from '../ir/ndarray.js';
import { type AttrsOf, type OpName, normAxis } from '../ir/ops.js';
import { type Liftable, type Trace, activeTrace, isTracing } from './trace.js';

export type TensorLike = Tensor | number;

export class Tensor {
  /** @internal Use ops, not this constructor. */
  constructor(
    private readonly _trace: Trace | undefined,
    private readonly _value: Value | undefined,
  ) {}

  /** The graph value in the active trace. */
  get value(): Value {
    const t = activeTrace();
    if (this._trace !== t) {
      throw new TraceError(`tensor ${this._value} belongs to another trace (or one that ended); tensors cannot cross trace boundaries: pass them as inputs instead`);
    }
    return this._value!;
  }

  get shape(): readonly number[] {
    return this.value.shape;
  }
  get dtype(): DType {
    return this.value.dtype;
  }
  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return numel(this.shape);
  }
  /** Size of one dimension (negative counts from the end). */
  dim(axis: number): number {
    return this.shape[normAxis(axis, this.rank)]!;
  }

  toString(): string {
    return isTracing() ? `Tensor(${this.dtype}${fmtShape(this.shape)})` : 'Tensor(<detached>)';
  }

  // arithmetic ---------------------------------------------------------------
  add(o: TensorLike): Tensor { return binary('add', this, o); }
  sub(o: TensorLike): Tensor { return binary('sub', this, o); }
  mul(o: TensorLike): Tensor { return binary('mul', this, o); }
  div(o: TensorLike): Tensor { return binary('div', this, o); }
  pow(o: TensorLike): Tensor { return binary('pow', this, o); }
  maximum(o: TensorLike): Tensor { return binary('maximum', this, o); }
  minimum(o: TensorLike): Tensor { return binary('minimum', this, o); }
  neg(): Tensor { return unary('neg', this); }
  exp(): Tensor { return unary('exp', this); }
  log(): Tensor { return unary('log', this); }
  sqrt(): Tensor { return unary('sqrt', this); }
  rsqrt(): Tensor { return this.sqrt().reciprocal(); }
  reciprocal(): Tensor { return scalarLike(this, 1).div(this); }
  square(): Tensor { return this.mul(this); }
  tanh(): Tensor { return unary('tanh', this); }
  erf(): Tensor { return unary('erf', this); }
  sigmoid(): Tensor { return unary('sigmoid', this); }
  relu(): Tensor { return unary('relu', this); }
  abs(): Tensor { return unary('abs', this); }
  sign(): Tensor { return unary('sign', this); }
  /** Exact GELU, 0.5·x·(1 + erf(x/√2)) (a primitive: one fused kernel on ONNX Runtime). */
  gelu(): Tensor { return unary('gelu', this); }
  silu(): Tensor { return this.mul(this.sigmoid()); }
  /** clamp(alpha·x + beta, 0, 1) in one pass; the defaults are PyTorch's hardsigmoid. */
  hardSigmoid(alpha = 1 / 6, beta = 0.5): Tensor { return emit1('hard_sigmoid', [this], { alpha, beta }); }
  clamp(min?: number, max?: number): Tensor {
    let y: Tensor = this;
    if (min !== undefined) y = y.maximum(min);
    if (max !== undefined) y = y.minimum(max);
    return y;
  }

  // comparison and selection -------------------------------------------------
  eq(o: TensorLike): Tensor { return binary('equal', this, o); }
  lt(o: TensorLike): Tensor { return binary('less', this, o); }
  gt(o: TensorLike): Tensor { return binary('greater', this, o); }
  le(o: TensorLike): Tensor { return this.gt(o).not(); }
  ge(o: TensorLike): Tensor { return this.lt(o).not(); }
  and(o: Tensor): Tensor { return emit1('and', [this, o], {}); }
  or(o: Tensor): Tensor { return emit1('or', [this, o], {}); }
  not(): Tensor { return emit1('not', [this], {}); }
  cast(to: DType): Tensor { return to === this.dtype ? this : emit1('cast', [this], { to }); }
  float(): Tensor { return this.cast('float32'); }

  // linear algebra -----------------------------------------------------------
  matmul(o: Tensor): Tensor { return emit1('matmul', [this, o], {}); }

  // layout -------------------------------------------------------------------
  /** Reshape; one dimension may be -1 (inferred). */
  reshape(...shape: number[] | [readonly number[]]): Tensor {
    const dims = resolveShape(flatArgs(shape), this.size, this.shape);
    if (sameShape(dims, this.shape)) return this;
    return emit1('reshape', [this], { shape: dims });
  }
  /** Flattens dimensions start..end (inclusive) into one. */
  flatten(start = 0, end = -1): Tensor {
    const s = normAxis(start, this.rank);
    const e = normAxis(end, this.rank);
    const sh = this.shape;
    return this.reshape([...sh.slice(0, s), numel(sh.slice(s, e + 1)), ...sh.slice(e + 1)]);
  }
  /** Permutes dimensions (PyTorch `permute`). */
  permute(...perm: number[]): Tensor {
    const p = perm.map((a) => normAxis(a, this.rank));
    if (p.every((a, i) => a === i)) return this;
    return emit1('transpose', [this], { perm: p });
  }
  /** Swaps two dimensions (PyTorch `transpose`). */
  transpose(a: number, b: number): Tensor {
    const perm = [...this.shape.keys()];
    const [i, j] = [normAxis(a, this.rank), normAxis(b, this.rank)];
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    return this.permute(...perm);
  }
  /** Swaps the last two dimensions. */
  get mT(): Tensor {
    return this.transpose(-1, -2);
  }
  unsqueeze(axis: number): Tensor {
    const ax = normAxis(axis, this.rank + 1);
    const sh = [...this.shape];
    sh.splice(ax, 0, 1);
    return this.reshape(sh);
  }
  squeeze(axis?: number): Tensor {
    if (axis === undefined) return this.reshape(this.shape.filter((d) => d !== 1));
    const ax = normAxis(axis, this.rank);
    if (this.shape[ax] !== 1) return this;
    return this.reshape(this.shape.filter((_, i) => i !== ax));
  }
  /** Broadcasts to `shape`; -1 keeps a dimension. */
  expand(...shape: number[] | [readonly number[]]): Tensor {
    const dims = flatArgs(shape);
    const off = dims.length - this.rank;
    const full = dims.map((d, i) => (d === -1 ? this.shape[i - off]! : d));
    if (sameShape(full, this.shape)) return this;
    return emit1('expand', [this], { shape: full });
  }
  /** Python-style slice along one axis: negative indices count from the end, bounds are clamped. */
  slice(axis: number, start = 0, end = Infinity, step = 1): Tensor {
    const ax = normAxis(axis, this.rank);
    const d = this.shape[ax]!;
    if (!Number.isInteger(step) || step < 1) throw new AttributeError(`slice: step must be a positive integer, got ${step}`);
    const clamp = (i: number) => Math.min(Math.max(i < 0 ? i + d : i, 0), d);
    const s = clamp(start);
    const e = Math.max(clamp(end), s);
    if (s === 0 && e === d && step === 1) return this;
    return emit1('slice', [this], { starts: [s], ends: [e], axes: [ax], steps: [step] });
  }
  /** Element `index` of an axis, with that axis removed. */
  select(axis: number, index: number): Tensor {
    const ax = normAxis(axis, this.rank);
    const d = this.shape[ax]!;
    const i = index < 0 ? index + d : index;
    if (i < 0 || i >= d) throw new ShapeError(`select: index ${index} out of range for axis ${ax} of size ${d}`);
    return this.slice(ax, i, i + 1).squeeze(ax);
  }
  /** Splits into pieces of the given sizes (or equal pieces of `size`) along `axis`. */
  split(sizes: number | readonly number[], axis = 0): Tensor[] {
    const ax = normAxis(axis, this.rank);
    const d = this.shape[ax]!;
    const parts = typeof sizes === 'number' ? Array.from({ length: Math.ceil(d / sizes) }, (_, i) => Math.min(sizes, d - i * sizes)) : [...sizes];
    if (parts.reduce((a, b) => a + b, 0) !== d) throw new ShapeError(`split: sizes ${JSON.stringify(parts)} do not add up to axis ${ax} of size ${d}`);
    let at = 0;
    return parts.map((n) => this.slice(ax, at, (at += n)));
  }
  chunk(n: number, axis = 0): Tensor[] {
    const d = this.dim(axis);
    if (d % n !== 0) throw new ShapeError(`chunk: axis of size ${d} does not split into ${n} equal chunks`);
    return this.split(d / n, axis);
  }
  /** Cyclic shift (torch.roll) along the given axes. */
  roll(shifts: number | readonly number[], axes: number | readonly number[]): Tensor {
    const sh = typeof shifts === 'number' ? [shifts] : shifts;
    const ax = typeof axes === 'number' ? [axes] : axes;
    if (sh.length !== ax.length) throw new AttributeError(`roll: ${sh.length} shifts for ${ax.length} axes`);
    let y: Tensor = this;
    sh.forEach((s, i) => {
      const a = normAxis(ax[i]!, this.rank);
      const d = this.shape[a]!;
      const k = ((s % d) + d) % d;
      if (k !== 0) y = concat([y.slice(a, d - k), y.slice(a, 0, d - k)], a);
    });
    return y;
  }
  /** PyTorch `F.pad` order: pairs from the last dimension backwards. */
  pad(pads: readonly number[], mode: 'constant' | 'reflect' = 'constant', value = 0): Tensor {
    if (pads.length % 2 !== 0 || pads.length / 2 > this.rank) throw new AttributeError(`pad: ${pads.length} pad values for rank ${this.rank}; give (before, after) pairs from the last dimension`);
    const r = this.rank;
    const onnx = new Array<number>(2 * r).fill(0);
    for (let i = 0; i < pads.length / 2; i++) {
      const axis = r - 1 - i;
      onnx[axis] = pads[2 * i]!;
      onnx[axis + r] = pads[2 * i + 1]!;
    }
    if (onnx.some((p) => p < 0)) throw new AttributeError(`pad: negative padding ${JSON.stringify(pads)} is not supported; use slice`);
    if (onnx.every((p) => p === 0)) return this;
    return emit1('pad', [this], { pads: onnx, mode, value });
  }
  /** x.gather(axis, indices): selects whole slices (ONNX Gather / torch.index_select). */
  indexSelect(axis: number, indices: Tensor): Tensor {
    return emit1('gather', [this, indices], { axis: normAxis(axis, this.rank) });
  }
  /** torch.gather: out[i][j] = x[i][idx[i][j]] along `axis`. */
  gather(axis: number, indices: Tensor): Tensor {
    return emit1('gather_elements', [this, indices], { axis: normAxis(axis, this.rank) });
  }
  /** Out-of-place scatter-add: a copy of this tensor with `updates` added at `indices` along `axis`. */
  scatterAdd(axis: number, indices: Tensor, updates: Tensor): Tensor {
    return emit1('scatter_add', [this, indices, updates], { axis: normAxis(axis, this.rank) });
  }

  // reductions ---------------------------------------------------------------
  sum(axes?: number | readonly number[], keepdim = false): Tensor { return reduce('reduce_sum', this, axes, keepdim); }
  mean(axes?: number | readonly number[], keepdim = false): Tensor { return reduce('reduce_mean', this, axes, keepdim); }
  amax(axes?: number | readonly number[], keepdim = false): Tensor { return reduce('reduce_max', this, axes, keepdim); }
  /** Variance (biased unless `unbiased`). */
  var(axes?: number | readonly number[], keepdim = false, unbiased = false): Tensor {
    const ax = axesOf(this, axes);
    const n = ax.reduce((a, i) => a * this.shape[i]!, 1);
    const d = this.sub(this.mean(ax, true));
    const v = d.square().mean(ax, keepdim);
    return unbiased ? v.mul(n / (n - 1)) : v;
  }
  softmax(axis = -1): Tensor { return emit1('softmax', [this], { axis: normAxis(axis, this.rank) }); }
  logSoftmax(axis = -1): Tensor { return emit1('log_softmax', [this], { axis: normAxis(axis, this.rank) }); }
  /** The k largest (or smallest) values along `axis`, sorted, and their int64 indices. */
  topk(k: number, axis = -1, largest = true): [Tensor, Tensor] {
    const [v, i] = emit('topk', [this], { k, axis: normAxis(axis, this.rank), largest });
    return [v!, i!];
  }
  argmax(axis = -1, keepdim = false): Tensor {
    const i = this.topk(1, axis)[1];
    return keepdim ? i : i.squeeze(axis < 0 ? axis + this.rank : axis);
  }
}

// ------------------------------------------------------------------ internals

function flatArgs(args: number[] | [readonly number[]]): number[] {
  return Array.isArray(args[0]) ? [...(args[0] as readonly number[])] : (args as number[]);
}

function resolveShape(shape: number[], size: number, from: readonly number[]): number[] {
  const neg = shape.filter((d) => d === -1).length;
  if (neg > 1) throw new ShapeError(`reshape ${fmtShape(from)} to ${fmtShape(shape)}: only one dimension can be -1`);
  if (neg === 1) {
    const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
    if (known === 0 || size % known !== 0) throw new ShapeError(`cannot reshape ${fmtShape(from)} (${size} elements) to ${fmtShape(shape)}`);
    return shape.map((d) => (d === -1 ? size / known : d));
  }
  return shape;
}

function axesOf(x: Tensor, axes: number | readonly number[] | undefined): number[] {
  if (axes === undefined) return [...x.shape.keys()];
  return (typeof axes === 'number' ? [axes] : [...axes]).map((a) => normAxis(a, x.rank));
}

function reduce(op: 'reduce_sum' | 'reduce_mean' | 'reduce_max', x: Tensor, axes: number | readonly number[] | undefined, keepdims: boolean): Tensor {
  const ax = axesOf(x, axes);
  if (ax.length === 0) return x;
  return emit1(op, [x], { axes: ax, keepdims });
}

/** Emits a node in the active trace; returns its outputs as tensors. */
export function emit<K extends OpName>(op: K, inputs: readonly Tensor[], attrs: AttrsOf<K>): Tensor[] {
  const t = activeTrace();
  return t.emit(op, inputs.map((x) => x.value), attrs).map((v) => new Tensor(t, v));
}

export function emit1<K extends OpName>(op: K, inputs: readonly Tensor[], attrs: AttrsOf<K>): Tensor {
  return emit(op, inputs, attrs)[0]!;
}

/** g·gelu'(x): GELU's vector-Jacobian product as one op (autodiff's rule for gelu). */
export function geluGrad(x: Tensor, g: Tensor): Tensor {
  return emit1('gelu_grad', [x, g], {});
}

/** Wraps a graph value of the active trace as a tensor (used by autodiff and backends). */
export function wrap(v: Value): Tensor {
  return new Tensor(activeTrace(), v);
}

function unary(op: 'neg' | 'exp' | 'log' | 'sqrt' | 'tanh' | 'erf' | 'gelu' | 'sigmoid' | 'relu' | 'abs' | 'sign', x: Tensor): Tensor {
  return emit1(op, [x], {});
}

function binary(op: 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'equal' | 'less' | 'greater', a: Tensor, b: TensorLike): Tensor {
  return emit1(op, [a, typeof b === 'number' ? scalarLike(a, b) : b], {});
}

/** A rank-0 constant with `like`'s dtype. */
export function scalarLike(like: Tensor, value: number): Tensor {
  const dt = like.dtype;
  const arr = dt === 'int64' ? NDArray.int64([], [value]) : dt === 'bool' ? new NDArray('bool', [], Uint8Array.of(value ? 1 : 0)) : dt === 'float64' ? NDArray.float64([], [value]) : NDArray.float32([], [value]);
  return constant(arr);
}

// ---------------------------------------------------------------- functions

/** Embeds a concrete array in the graph. */
export function constant(value: NDArray): Tensor {
  return emit1('constant', [], { value });
}

export function full(shape: readonly number[], value: number, dtype: DType = 'float32'): Tensor {
  return scalarLikeDtype(dtype, value).expand([...shape]);
}

function scalarLikeDtype(dtype: DType, value: number): Tensor {
  const arr = dtype === 'int64' ? NDArray.int64([], [value]) : dtype === 'float64' ? NDArray.float64([], [value]) : dtype === 'bool' ? new NDArray('bool', [], Uint8Array.of(value ? 1 : 0)) : NDArray.float32([], [value]);
  return constant(arr);
}

export function zeros(shape: readonly number[], dtype: DType = 'float32'): Tensor {
  return full(shape, 0, dtype);
}

/** [start, start+step, ...) as a constant (shapes are static, so it is computed at trace time). */
export function arange(start: number, end?: number, step = 1, dtype: DType = 'int64'): Tensor {
  if (end === undefined) [start, end] = [0, start];
  const n = Math.max(0, Math.ceil((end - start) / step));
  const vals = Array.from({ length: n }, (_, i) => start + i * step);
  return constant(dtype === 'int64' ? NDArray.int64([n], vals) : new NDArray(dtype, [n], dtype === 'float64' ? Float64Array.from(vals) : Float32Array.from(vals) as never));
}

export function concat(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new ShapeError('concat of no tensors');
  if (tensors.length === 1) return tensors[0]!;
  return emit1('concat', tensors, { axis: normAxis(axis, tensors[0]!.rank) });
}

export function stack(tensors: readonly Tensor[], axis = 0): Tensor {
  if (tensors.length === 0) throw new ShapeError('stack of no tensors');
  const ax = normAxis(axis, tensors[0]!.rank + 1);
  return concat(tensors.map((t) => t.unsqueeze(ax)), ax);
}

export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const like = typeof a !== 'number' ? a : typeof b !== 'number' ? b : undefined;
  if (!like) throw new AttributeError('where: at least one of the two branches must be a tensor');
  const ta = typeof a === 'number' ? scalarLike(like, a) : a;
  const tb = typeof b === 'number' ? scalarLike(like, b) : b;
  return emit1('where', [cond, ta, tb], {});
}

/** One-hot float encoding of int64 `indices` over `depth` classes, as a new last axis. */
export function oneHot(indices: Tensor, depth: number, dtype: DType = 'float32'): Tensor {
  return indices.unsqueeze(-1).eq(arange(depth)).cast(dtype);
}

export interface Conv2dOptions {
  stride?: number | readonly [number, number];
  /** Symmetric [ph, pw], a single number, or [top, left, bottom, right]. */
  padding?: number | readonly number[];
  dilation?: number | readonly [number, number];
  groups?: number;
}

export function pair(v: number | readonly number[] | undefined, dflt: number): [number, number] {
  if (v === undefined) return [dflt, dflt];
  if (typeof v === 'number') return [v, v];
  if (v.length !== 2) throw new AttributeError(`expected a number or a pair, got ${JSON.stringify(v)}`);
  return [v[0]!, v[1]!];
}

export function quad(v: number | readonly number[] | undefined): [number, number, number, number] {
  if (v === undefined) return [0, 0, 0, 0];
  if (typeof v === 'number') return [v, v, v, v];
  if (v.length === 2) return [v[0]!, v[1]!, v[0]!, v[1]!];
  if (v.length === 4) return [v[0]!, v[1]!, v[2]!, v[3]!];
  throw new AttributeError(`padding must be a number, [ph, pw] or [top, left, bottom, right], got ${JSON.stringify(v)}`);
}

function convAttrs(o: Conv2dOptions): AttrsOf<'conv2d'> {
  return { stride: pair(o.stride, 1), padding: quad(o.padding), dilation: pair(o.dilation, 1), groups: o.groups ?? 1 };
}

/** 2-D convolution (cross-correlation) of NCHW `x` with `w` [out, in/groups, kh, kw]. */
export function conv2d(x: Tensor, w: Tensor, bias?: Tensor, opts: Conv2dOptions = {}): Tensor {
  return emit1('conv2d', bias ? [x, w, bias] : [x, w], convAttrs(opts));
}

/** Transposed convolution with `w` [in, out/groups, kh, kw]. */
export function convTranspose2d(x: Tensor, w: Tensor, bias?: Tensor, opts: Conv2dOptions & { outputPadding?: number | readonly [number, number] } = {}): Tensor {
  return emit1('conv_transpose2d', bias ? [x, w, bias] : [x, w], { ...convAttrs(opts), outputPadding: pair(opts.outputPadding, 0) });
}

export interface PoolOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly number[];
  /** avg pool only: count padded zeros in the divisor (PyTorch default true). */
  countIncludePad?: boolean;
}

/** Max pooling; padding never wins (it acts as −inf). Returns the maxima (the op's indices output serves the backward pass). */
export function maxPool2d(x: Tensor, kernel: number | readonly [number, number], opts: PoolOptions = {}): Tensor {
  const k = pair(kernel, 1);
  return emit1('max_pool2d', [x], { kernel: k, stride: pair(opts.stride ?? k, 1), padding: quad(opts.padding) });
}

export function avgPool2d(x: Tensor, kernel: number | readonly [number, number], opts: PoolOptions = {}): Tensor {
  const k = pair(kernel, 1);
  return emit1('avg_pool2d', [x], { kernel: k, stride: pair(opts.stride ?? k, 1), padding: quad(opts.padding), countIncludePad: opts.countIncludePad ?? true });
}

export interface UnfoldOptions {
  stride?: number | readonly [number, number];
  padding?: number | readonly number[];
  dilation?: number | readonly [number, number];
}

/** im2col (torch.nn.functional.unfold): [N, C, H, W] → [N, C·kh·kw, L]. */
export function unfold(x: Tensor, kernel: number | readonly [number, number], opts: UnfoldOptions = {}): Tensor {
  const attrs = { kernel: pair(kernel, 1), stride: pair(opts.stride, 1), padding: quad(opts.padding), dilation: pair(opts.dilation, 1) };
  // A 1×1 window without padding reads each position once: the columns are x itself, strided.
  if (attrs.kernel[0] === 1 && attrs.kernel[1] === 1 && attrs.padding.every((p) => p === 0) && x.rank === 4) {
    const cols = x.slice(2, 0, Infinity, attrs.stride[0]).slice(3, 0, Infinity, attrs.stride[1]);
    return cols.flatten(2);
  }
  return emit1('unfold', [x], attrs);
}

/** col2im (torch.nn.functional.fold): [N, C·kh·kw, L] → [N, C, H, W], summing overlaps. */
export function fold(x: Tensor, outputSize: readonly [number, number], kernel: number | readonly [number, number], opts: UnfoldOptions = {}): Tensor {
  return emit1('fold', [x], { outputSize, kernel: pair(kernel, 1), stride: pair(opts.stride, 1), padding: quad(opts.padding), dilation: pair(opts.dilation, 1) });
}

/** Layer norm over the trailing dimensions of the weight's shape (or `normalizedRank` dims). */
export function layerNorm(x: Tensor, weight: Tensor | undefined, bias: Tensor | undefined, eps = 1e-5, normalizedRank = weight ? weight.rank : 1): Tensor {
  const inputs = weight ? (bias ? [x, weight, bias] : [x, weight]) : [x];
  if (!weight && bias) throw new AttributeError('layerNorm: a bias without a weight is not supported');
  return emit1('layer_norm', inputs, { axis: x.rank - normalizedRank, epsilon: eps });
}

/**
 * Layer norm's vector-Jacobian product (autodiff's rule for layer_norm): the cotangents of x, of the
 * weight and of the bias, given the cotangent g of y and the forward's saved mean and 1/std.
 */
export function layerNormGrad(x: Tensor, g: Tensor, mean: Tensor, rstd: Tensor, weight: Tensor | undefined, axis: number): [Tensor, Tensor, Tensor] {
  const [gx, gw, gb] = emit('layer_norm_grad', weight ? [x, g, mean, rstd, weight] : [x, g, mean, rstd], { axis });
  return [gx!, gw!, gb!];
}

/** Max pooling's vector-Jacobian product (autodiff's rule for it): g added at each window's first maximum of x. */
export function maxPool2dGrad(x: Tensor, g: Tensor, attrs: AttrsOf<'max_pool2d'>): Tensor {
  return emit1('max_pool2d_grad', [x, g], attrs);
}

/** Train-mode batch norm's vector-Jacobian product (autodiff's rule for it): the cotangents of x, of the weight and of the bias. */
export function batchNormTrainGrad(x: Tensor, g: Tensor, mean: Tensor, variance: Tensor, weight: Tensor | undefined, eps: number): [Tensor, Tensor, Tensor] {
  const [gx, gw, gb] = emit('batch_norm_train_grad', weight ? [x, g, mean, variance, weight] : [x, g, mean, variance], { epsilon: eps });
  return [gx!, gw!, gb!];
}

/** Eval-mode batch norm with running statistics. */
export function batchNorm(x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps = 1e-5): Tensor {
  return emit1('batch_norm', [x, weight, bias, runningMean, runningVar], { epsilon: eps });
}

/** Train-mode batch norm: [y, batch mean, biased batch variance]. */
export function batchNormTrain(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): [Tensor, Tensor, Tensor] {
  const [y, m, v] = emit('batch_norm_train', [x, weight, bias], { epsilon: eps });
  return [y!, m!, v!];
}

/**
 * A concrete tensor held outside any trace (a module's parameter or buffer).
 * Inside a trace it acts as a Tensor: the first op that uses it lifts it
 * into the graph as an input of role 'param'.
 */
export class Parameter extends Tensor implements Liftable {
  data: NDArray;
  /** Set by the module system to the state-dict key. */
  name: string;
  /** False for buffers (running stats, index tables): never optimised. */
  readonly trainable: boolean;
  /** Whether a buffer is part of the state dict (PyTorch's `persistent`). */
  readonly persistent: boolean;

  constructor(data: NDArray, opts: { name?: string; trainable?: boolean; persistent?: boolean } = {}) {
    super(undefined, undefined);
    this.data = data;
    this.name = opts.name ?? '';
    this.trainable = opts.trainable ?? data.dtype !== 'int64';
    this.persistent = opts.persistent ?? true;
  }

  override get value(): Value {
    return activeTrace().lift(this);
  }
  override get shape(): readonly number[] {
    return this.data.shape;
  }
  override get dtype(): DType {
    return this.data.dtype;
  }

  override toString(): string {
    return `Parameter(${this.name || '?'}: ${this.data.dtype}${fmtShape(this.data.shape)})`;
  }
}
