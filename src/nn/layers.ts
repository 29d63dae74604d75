/**
 * The standard layers, with PyTorch's parameter names and semantics.
 * Constructors take an explicit generator (`rng`) for initialisation.
 */
import { AttributeError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import type { Rng } from '../rng.js';
import {
  type Conv2dOptions,
  Parameter,
  Tensor,
  avgPool2d,
  batchNorm,
  batchNormTrain,
  conv2d,
  layerNorm,
  maxPool2d,
  pair,
  wrap,
} from '../tensor/tensor.js';
import { activeTrace } from '../tensor/trace.js';
import { filled, torchDefault, truncNormal, uniform } from './init.js';
import { Module } from './module.js';

export type WeightInit = 'torch' | 'trunc_normal';

export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x;
  }
}

export class Linear extends Module {
  weight: Parameter;
  bias: Parameter | undefined;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: { rng: Rng; bias?: boolean; init?: WeightInit },
  ) {
    super();
    const shape = [outFeatures, inFeatures];
    this.weight = new Parameter(opts.init === 'trunc_normal' ? truncNormal(opts.rng, shape) : torchDefault(opts.rng, shape));
    this.bias = opts.bias === false ? undefined : new Parameter(opts.init === 'trunc_normal' ? filled([outFeatures], 0) : torchBias(opts.rng, inFeatures, outFeatures));
  }

  forward(x: Tensor): Tensor {
    const y = x.matmul(this.weight.mT);
    return this.bias ? y.add(this.bias) : y;
  }

  override extraRepr(): string {
    return `${this.inFeatures} → ${this.outFeatures}${this.bias ? '' : ', no bias'}`;
  }
}

/** PyTorch's default bias init: U(±1/√fan_in). */
function torchBias(rng: Rng, fanIn: number, n: number): NDArray<'float32'> {
  return uniform(rng, [n], 1 / Math.sqrt(fanIn));
}

export interface ConvOptions extends Conv2dOptions {
  rng: Rng;
  bias?: boolean;
  init?: WeightInit;
}

export class Conv2d extends Module {
  weight: Parameter;
  bias: Parameter | undefined;
  readonly opts: Conv2dOptions;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernel: number | readonly [number, number],
    opts: ConvOptions,
  ) {
    super();
    const groups = opts.groups ?? 1;
    if (inChannels % groups || outChannels % groups) throw new AttributeError(`Conv2d: groups ${groups} must divide in (${inChannels}) and out (${outChannels}) channels`);
    const [kh, kw] = pair(kernel, 1);
    const shape = [outChannels, inChannels / groups, kh, kw];
    this.weight = new Parameter(opts.init === 'trunc_normal' ? truncNormal(opts.rng, shape) : torchDefault(opts.rng, shape));
    this.bias = opts.bias === false ? undefined : new Parameter(opts.init === 'trunc_normal' ? filled([outChannels], 0) : torchBias(opts.rng, (inChannels / groups) * kh * kw, outChannels));
    this.opts = { stride: opts.stride, padding: opts.padding, dilation: opts.dilation, groups };
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.opts);
  }

  override extraRepr(): string {
    const [, , kh, kw] = this.weight.data.shape;
    return `${this.inChannels} → ${this.outChannels}, ${kh}×${kw}${this.opts.stride && this.opts.stride !== 1 ? `, stride ${this.opts.stride}` : ''}${(this.opts.groups ?? 1) > 1 ? `, groups ${this.opts.groups}` : ''}`;
  }
}

/** BatchNorm over dim 1 of [N, C, ...]; PyTorch's momentum convention (new = (1−m)·old + m·batch). */
export class BatchNorm2d extends Module {
  weight: Parameter;
  bias: Parameter;
  running_mean: Parameter;
  running_var: Parameter;
  num_batches_tracked: Parameter;

  constructor(
    readonly numFeatures: number,
    readonly opts: { eps?: number; momentum?: number } = {},
  ) {
    super();
    this.weight = new Parameter(filled([numFeatures], 1));
    this.bias = new Parameter(filled([numFeatures], 0));
    this.running_mean = new Parameter(filled([numFeatures], 0), { trainable: false });
    this.running_var = new Parameter(filled([numFeatures], 1), { trainable: false });
    this.num_batches_tracked = new Parameter(NDArray.int64([], [0]), { trainable: false });
  }

  get eps(): number {
    return this.opts.eps ?? 1e-5;
  }

  forward(x: Tensor): Tensor {
    if (!this.training) return batchNorm(x, this.weight, this.bias, this.running_mean, this.running_var, this.eps);
    const [y, mean, variance] = batchNormTrain(x, this.weight, this.bias, this.eps);
    const m = this.opts.momentum ?? 0.1;
    const n = x.size / x.dim(1);
    const t = activeTrace();
    t.assign(this.running_mean, this.running_mean.mul(1 - m).add(mean.mul(m)).value);
    t.assign(this.running_var, this.running_var.mul(1 - m).add(variance.mul((m * n) / (n - 1))).value);
    t.assign(this.num_batches_tracked, this.num_batches_tracked.add(1).value);
    return y;
  }

  override extraRepr(): string {
    return `${this.numFeatures}, eps=${this.eps}`;
  }
}

export class LayerNorm extends Module {
  weight: Parameter | undefined;
  bias: Parameter | undefined;
  readonly normalizedShape: readonly number[];

  constructor(
    shape: number | readonly number[],
    readonly opts: { eps?: number; affine?: boolean } = {},
  ) {
    super();
    this.normalizedShape = typeof shape === 'number' ? [shape] : [...shape];
    if (opts.affine !== false) {
      this.weight = new Parameter(filled(this.normalizedShape, 1));
      this.bias = new Parameter(filled(this.normalizedShape, 0));
    }
  }

  get eps(): number {
    return this.opts.eps ?? 1e-5;
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps, this.normalizedShape.length);
  }

  override extraRepr(): string {
    return `${this.normalizedShape.join('×')}, eps=${this.eps}`;
  }
}

export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return x.gelu();
  }
}

export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** Uniform [0, 1) noise of `shape` from the runner's seeded generator. */
function noise(shape: readonly number[]): Tensor {
  return wrap(activeTrace().random(shape));
}

export class Dropout extends Module {
  constructor(readonly p = 0) {
    super();
    if (p < 0 || p >= 1) throw new AttributeError(`Dropout: p must be in [0, 1), got ${p}`);
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    return x.mul(noise(x.shape).ge(this.p).cast(x.dtype)).div(1 - this.p);
  }
}

/** Stochastic depth: drops a whole residual branch per sample (timm's DropPath). */
export class DropPath extends Module {
  constructor(readonly p = 0) {
    super();
    if (p < 0 || p >= 1) throw new AttributeError(`DropPath: p must be in [0, 1), got ${p}`);
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    const keep = noise([x.dim(0), ...x.shape.slice(1).map(() => 1)]).ge(this.p).cast(x.dtype);
    return x.mul(keep).div(1 - this.p);
  }

  override extraRepr(): string {
    return `p=${this.p}`;
  }
}

/** Modules applied in order; keys are '0', '1', … like nn.Sequential. */
export class Sequential extends Module {
  readonly layers: Module[];

  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
  }

  protected override children(): [string, Module][] {
    return this.layers.map((m, i) => [String(i), m]);
  }

  forward(x: Tensor): Tensor {
    return this.layers.reduce((y, m) => m.call(y), x);
  }
}

/** timm's Mlp: fc1 → act → drop → fc2 → drop. */
export class Mlp extends Module {
  fc1: Linear;
  act: Module;
  fc2: Linear;
  drop: Dropout;

  constructor(inFeatures: number, hidden: number, opts: { rng: Rng; outFeatures?: number; act?: Module; drop?: number; init?: WeightInit }) {
    super();
    this.fc1 = new Linear(inFeatures, hidden, { rng: opts.rng, init: opts.init });
    this.act = opts.act ?? new GELU();
    this.fc2 = new Linear(hidden, opts.outFeatures ?? inFeatures, { rng: opts.rng, init: opts.init });
    this.drop = new Dropout(opts.drop ?? 0);
  }

  forward(x: Tensor): Tensor {
    return this.drop.call(this.fc2.call(this.drop.call(this.act.call(this.fc1.call(x)))));
  }
}

/** Multi-head self-attention on [B, N, C] tokens, timm's ViT layout (qkv as one Linear, channels (3, heads, head_dim)). */
export class Attention extends Module {
  qkv: Linear;
  attn_drop: Dropout;
  proj: Linear;
  proj_drop: Dropout;
  readonly heads: number;
  readonly scale: number;

  constructor(dim: number, opts: { rng: Rng; heads: number; qkvBias?: boolean; qkScale?: number; attnDrop?: number; projDrop?: number; init?: WeightInit }) {
    super();
    if (dim % opts.heads) throw new AttributeError(`Attention: dim ${dim} is not divisible by ${opts.heads} heads`);
    this.heads = opts.heads;
    this.scale = opts.qkScale ?? (dim / opts.heads) ** -0.5;
    this.qkv = new Linear(dim, dim * 3, { rng: opts.rng, bias: opts.qkvBias ?? false, init: opts.init });
    this.attn_drop = new Dropout(opts.attnDrop ?? 0);
    this.proj = new Linear(dim, dim, { rng: opts.rng, init: opts.init });
    this.proj_drop = new Dropout(opts.projDrop ?? 0);
  }

  forward(x: Tensor): Tensor {
    const [b, n, c] = x.shape as [number, number, number];
    const qkv = this.qkv.call(x).reshape(b, n, 3, this.heads, c / this.heads).permute(2, 0, 3, 1, 4);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
    const attn = this.attn_drop.call(q.mul(this.scale).matmul(k.mT).softmax(-1));
    const y = attn.matmul(v).transpose(1, 2).reshape(b, n, c);
    return this.proj_drop.call(this.proj.call(y));
  }
}

export class MaxPool2d extends Module {
  constructor(
    readonly kernel: number,
    readonly stride = kernel,
    readonly padding = 0,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernel, { stride: this.stride, padding: this.padding });
  }
}

export class AvgPool2d extends Module {
  constructor(
    readonly kernel: number,
    readonly stride = kernel,
    readonly padding = 0,
    readonly countIncludePad = true,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.kernel, { stride: this.stride, padding: this.padding, countIncludePad: this.countIncludePad });
  }
}

/** AdaptiveAvgPool2d(1): the mean over H and W, keeping them as 1×1. */
export class GlobalAvgPool2d extends Module {
  forward(x: Tensor): Tensor {
    return x.mean([2, 3], true);
  }
}
