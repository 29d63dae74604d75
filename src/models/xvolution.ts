/**
 * X-volution (Chen, Wang, Ni, "X-volution: On the Unification of Convolution
 * and Self-attention", arXiv 2106.02253) and its ResNet hosts.
 *
 * An X-volution replaces a host "3×3 conv → BN" pair with two summed branches:
 *
 *     y = BN_c(Conv3x3(x))  +  BN_a(Weighting(P(x)))              PSSA (spec §4)
 *     y = BN_c(Conv3x3(x))  +  BN_a(Proj(MHSA(x)))                X-volution (SA) (spec §6.3)
 *
 * PSSA (Pixel Shift Self-Attention) multiplies the map with copies of itself
 * shifted by L pixels in D directions, P[c·D + k] = x[c] · N_k(x)[c], and
 * weights the D·C products with a convolution. No official code or weights
 * exist: this implements the project's design spec (shared/models/xvolution.md).
 * Every detail the paper leaves open is an option; the ones that change the
 * function or the weight layout are stored in checkpoint metadata
 * (`xvolutionMetadata` / `checkXVolutionMetadata`), since tensor shapes alone
 * do not determine them.
 */
import { ConfigError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { filled } from '../nn/init.js';
import { BatchNorm2d, type Conv2d } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { Rng } from '../rng.js';
import { Parameter, type Tensor, stack } from '../tensor/tensor.js';
import { BasicBlock, type ConvBnReplacer, type ConvBnSite, ResNet, type ResNetConfig, kaimingConv, torchvisionPretrained } from './resnet.js';
import { registerFamily, registerVariant } from './registry.js';

// ------------------------------------------------------------------ options

/** A PSSA direction (dy, dx), in units of the shift L. */
export type Offset = readonly [dy: number, dx: number];

/**
 * The default directions: the 3×3 neighbourhood without its centre, kernel
 * row-major, so tap k sits at kernel position (dy+1, dx+1). Part of the
 * weight format (the products' channel c·D + k): never reorder.
 */
export const D8: readonly Offset[] = [
  [-1, -1], [-1, 0], [-1, 1],
  [0, -1], [0, 1],
  [1, -1], [1, 0], [1, 1],
];
export const D4: readonly Offset[] = [[-1, 0], [0, -1], [0, 1], [1, 0]];

/** The operator's options (spec §4.6, §6.3); snake_case like every family config. */
export interface XVolutionOptions {
  /** Attention branch: PSSA, or global multi-head self-attention ("X-volution (SA)"). */
  branch: 'pssa' | 'sa';
  /** Shift distance L in pixels. */
  shift: number;
  /** Shift directions, in tap order. */
  directions: 'D8' | 'D4' | readonly Offset[];
  /** Append the centre tap (0, 0), i.e. x ⊙ x, as the last tap. */
  include_center: boolean;
  /** What a shift brings in at the borders: zeros, or the opposite border. */
  fill: 'zeros' | 'circular';
  /** `qk`: products of a 1×1 query map with shifted 1×1 key maps, instead of the raw input. */
  embed: 'none' | 'qk';
  /** How the D·Cin products become Cout channels: full conv, per-channel conv, or a plain sum. */
  weighting: 'full' | 'depthwise' | 'none';
  /** Kernel of the weighting conv (1, or 3 with padding 1). */
  weighting_kernel: 1 | 3;
  /** Conv branch kernel; follows the replaced layer. */
  conv_kernel: 3;
  /**
   * Initial γ of the attention branch's BN. Default 0 (the spec leaves it to the project): a fresh
   * model then equals its ResNet host and stays well-scaled in eval mode — the branch is quadratic in
   * its input, so with γ = 1 and untrained running statistics activations square at every layer and
   * overflow to NaN by layer 3 — and the branch grows in from zero during training, like zero-init
   * residuals. Set 1 for the spec's from-scratch suggestion.
   */
  attn_bn_gamma_init: number;
  /** SA branch: channels per head (heads = max(1, Cout / sa_head_dim)). */
  sa_head_dim: number;
  /** SA branch: keys per online-softmax chunk; maps with more tokens never materialise the full attention matrix. */
  sa_chunk: number;
}

export const XVOLUTION_DEFAULTS: XVolutionOptions = {
  branch: 'pssa',
  shift: 1,
  directions: 'D8',
  include_center: false,
  fill: 'zeros',
  embed: 'none',
  weighting: 'full',
  weighting_kernel: 1,
  conv_kernel: 3,
  attn_bn_gamma_init: 0,
  sa_head_dim: 64,
  sa_chunk: 1024,
};

/** The taps in order: the directions, then the centre when included. */
export function resolveOffsets(o: Pick<XVolutionOptions, 'directions' | 'include_center'>): Offset[] {
  const base = o.directions === 'D8' ? D8 : o.directions === 'D4' ? D4 : o.directions;
  return [...base, ...(o.include_center ? [[0, 0] as const] : [])];
}

function validateOptions(o: XVolutionOptions, inChannels: number, outChannels: number): void {
  const bad = (msg: string) => new ConfigError(`X-volution ${inChannels} → ${outChannels}: ${msg}`);
  const oneOf = <T>(name: string, v: T, allowed: readonly T[]) => {
    if (!allowed.includes(v)) throw bad(`${name} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(v)}`);
  };
  oneOf('branch', o.branch, ['pssa', 'sa']);
  oneOf('conv_kernel', o.conv_kernel, [3]);
  if (o.branch === 'sa') {
    if (!Number.isInteger(o.sa_head_dim) || o.sa_head_dim < 1) throw bad(`sa_head_dim must be a positive integer, got ${o.sa_head_dim}`);
    if (!Number.isInteger(o.sa_chunk) || o.sa_chunk < 1) throw bad(`sa_chunk must be a positive integer, got ${o.sa_chunk}`);
    return;
  }
  if (!Number.isInteger(o.shift) || o.shift < 1) throw bad(`shift must be an integer ≥ 1, got ${o.shift}`);
  oneOf('fill', o.fill, ['zeros', 'circular']);
  oneOf('embed', o.embed, ['none', 'qk']);
  oneOf('weighting', o.weighting, ['full', 'depthwise', 'none']);
  oneOf('weighting_kernel', o.weighting_kernel, [1, 3]);
  if (typeof o.directions === 'string') oneOf('directions', o.directions, ['D8', 'D4']);
  else {
    const seen = new Set<string>();
    for (const d of o.directions) {
      if (!Array.isArray(d) || d.length !== 2 || !d.every(Number.isInteger)) throw bad(`directions must be 'D8', 'D4' or a list of integer [dy, dx] pairs, got ${JSON.stringify(d)}`);
      if (d[0] === 0 && d[1] === 0) throw bad('directions must not contain [0, 0]; use include_center');
      if (seen.has(d.join())) throw bad(`direction ${JSON.stringify(d)} is listed twice`);
      seen.add(d.join());
    }
    if (seen.size === 0) throw bad('directions is empty');
  }
  if (o.weighting !== 'full' && inChannels !== outChannels) throw bad(`weighting '${o.weighting}' keeps the channel count, so it needs in = out channels; use 'full'`);
  if (o.weighting === 'none' && o.weighting_kernel !== 1) throw bad("weighting 'none' has no kernel; weighting_kernel must be 1");
}

// ------------------------------------------------------------ functional core

/** x at the output grid of a stride-s 3×3/pad-1 conv: positions (s·i, s·j). */
export function sampleGrid(x: Tensor, stride: number): Tensor {
  return stride === 1 ? x : x.slice(2, 0, Infinity, stride).slice(3, 0, Infinity, stride);
}

/**
 * The shifted maps N_k(x)[c, i, j] = x[c, i + L·dy_k, j + L·dx_k] (zero or
 * circular fill), at the positions (s·i, s·j): [B, C, D, H', W'].
 */
export function shiftedNeighbours(x: Tensor, offsets: readonly Offset[], shift: number, fill: 'zeros' | 'circular', stride = 1): Tensor {
  const [, , h, w] = x.shape as [number, number, number, number];
  const [ho, wo] = [Math.floor((h - 1) / stride) + 1, Math.floor((w - 1) / stride) + 1];
  const window = (t: Tensor, y0: number, x0: number) => t.slice(2, y0, y0 + (ho - 1) * stride + 1, stride).slice(3, x0, x0 + (wo - 1) * stride + 1, stride);
  let maps: Tensor[];
  if (fill === 'zeros') {
    const padY = shift * Math.max(...offsets.map(([dy]) => Math.abs(dy)));
    const padX = shift * Math.max(...offsets.map(([, dx]) => Math.abs(dx)));
    const padded = x.pad([padX, padX, padY, padY]);
    maps = offsets.map(([dy, dx]) => window(padded, padY + shift * dy, padX + shift * dx));
  } else {
    // torch.roll(x, s)[i] = x[i − s], so rolling by −L·δ brings x[i + L·δ] to i.
    maps = offsets.map(([dy, dx]) => window(x.roll([-shift * dy, -shift * dx], [2, 3]), 0, 0));
  }
  return stack(maps, 2);
}

/**
 * PSSA's transformed features: P[c·D + k] = query[c] · N_k(key)[c] (spec §4.2, §4.5).
 * `query` is already at the output grid (s·i, s·j); `key` is at full resolution.
 * Returns [B, C·D, H', W'], channel-major (the layout `depthwise` relies on).
 */
export function pssaProducts(query: Tensor, key: Tensor, offsets: readonly Offset[], shift: number, fill: 'zeros' | 'circular', stride = 1): Tensor {
  const neighbours = shiftedNeighbours(key, offsets, shift, fill, stride);
  if (neighbours.dim(3) !== query.dim(2) || neighbours.dim(4) !== query.dim(3)) {
    throw new ConfigError(`pssaProducts: the query grid ${query.shape.slice(2).join('×')} is not the stride-${stride} grid of the key map ${key.shape.slice(2).join('×')}`);
  }
  return neighbours.mul(query.unsqueeze(2)).flatten(1, 2);
}

/**
 * Multi-head attention of every query position over all key positions, maps
 * in and out ([B, C, Hq, Wq] queries, [B, C, H, W] keys and values; head h
 * owns channels h·hd … h·hd + hd − 1). Keys are processed `chunk` at a time
 * with an online softmax (running max and denominator), so the full
 * attention matrix is never built; one chunk is the plain softmax.
 */
export function globalAttention(q: Tensor, k: Tensor, v: Tensor, heads: number, chunk = Infinity): Tensor {
  const [b, c, hq, wq] = q.shape as [number, number, number, number];
  const n = k.dim(2) * k.dim(3);
  const hd = c / heads;
  const qh = q.reshape(b, heads, hd, hq * wq).transpose(2, 3).mul(hd ** -0.5); // [B, nh, Nq, hd]
  const kt = k.reshape(b, heads, hd, n); // [B, nh, hd, N]: already kᵀ
  const vh = v.reshape(b, heads, hd, n).transpose(2, 3); // [B, nh, N, hd]
  let out: Tensor;
  if (n <= chunk) out = qh.matmul(kt).softmax(-1).matmul(vh);
  else {
    const step = (start: number) => {
      const logits = qh.matmul(kt.slice(3, start, start + chunk));
      return { logits, max: logits.amax(-1, true), values: vh.slice(2, start, start + chunk) };
    };
    const first = step(0);
    let max = first.max;
    let p = first.logits.sub(max).exp();
    let denom = p.sum(-1, true);
    let acc = p.matmul(first.values);
    for (let start = chunk; start < n; start += chunk) {
      const s = step(start);
      const newMax = max.maximum(s.max);
      const rescale = max.sub(newMax).exp();
      p = s.logits.sub(newMax).exp();
      denom = denom.mul(rescale).add(p.sum(-1, true));
      acc = acc.mul(rescale).add(p.matmul(s.values));
      max = newMax;
    }
    out = acc.div(denom);
  }
  return out.transpose(2, 3).reshape(b, c, hq, wq);
}

// --------------------------------------------------------------- BN folding

/** BN in eval mode as y = x·scale + shift, per channel (float64). */
function bnAffine(bn: BatchNorm2d): { scale: Float64Array; shift: Float64Array } {
  const [g, beta, mean, variance] = [bn.weight, bn.bias, bn.running_mean, bn.running_var].map((p) => p.data.toFloat64()) as [Float64Array, Float64Array, Float64Array, Float64Array];
  const scale = g.map((gi, i) => gi / Math.sqrt(variance[i]! + bn.eps));
  return { scale, shift: beta.map((bi, i) => bi - mean[i]! * scale[i]!) };
}

/** w[o, …] · scale[o]: a BN's scale folded into the conv in front of it. */
function scaleOutChannels(w: NDArray, scale: Float64Array): NDArray<'float32'> {
  const src = w.toFloat64();
  const per = src.length / scale.length;
  return NDArray.float32(w.shape, src.map((v, i) => v * scale[Math.floor(i / per)]!));
}

function vector(values: ArrayLike<number>): Parameter {
  return new Parameter(NDArray.float32([values.length], values));
}

function copyInto(to: Conv2d, from: Conv2d): void {
  to.weight.data = NDArray.float32(from.weight.data.shape, from.weight.data.toFloat64());
  if (from.bias && to.bias) to.bias.data = NDArray.float32(from.bias.data.shape, from.bias.data.toFloat64());
}

// ----------------------------------------------------------------- modules

export interface XVolutionArgs extends Partial<XVolutionOptions> {
  rng: Rng;
  stride?: number;
}

/**
 * The conv branch shared by both X-volutions: `conv` and `conv_bn` are the
 * host's conv and BN, so pretrained host weights load into them directly.
 * After `fold()` the BNs are gone and `conv` carries the summed bias.
 */
export abstract class XVolutionBase extends Module {
  conv: Conv2d;
  conv_bn: BatchNorm2d | undefined;
  readonly options: XVolutionOptions;
  readonly stride: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    args: XVolutionArgs,
  ) {
    super();
    const { rng, stride, ...options } = args;
    this.options = { ...XVOLUTION_DEFAULTS, ...options };
    validateOptions(this.options, inChannels, outChannels);
    this.stride = stride ?? 1;
    this.conv = kaimingConv(inChannels, outChannels, this.options.conv_kernel, { rng, stride: this.stride });
    this.conv_bn = new BatchNorm2d(outChannels);
  }

  /** The attention branch, BN (or its folded scale) included. */
  protected abstract attention(x: Tensor): Tensor;

  /**
   * An equivalent inference module with both BNs folded into their branches
   * (spec §7): the sum of a static 3×3 conv and the folded attention branch,
   * the paper's dynamic convolution.
   */
  abstract fold(): XVolutionBase;

  get isFolded(): boolean {
    return this.conv_bn === undefined;
  }

  forward(x: Tensor): Tensor {
    const conv = this.conv.call(x);
    return (this.conv_bn ? this.conv_bn.call(conv) : conv).add(this.attention(x));
  }

  /** Starts a folded copy: conv branch folded, the returned shift still to be added to the conv bias. */
  protected foldConvBranch<T extends XVolutionBase>(into: T): { module: T; shift: Float64Array } {
    if (!this.conv_bn) throw new ConfigError(`${this.path || 'X-volution'}: already folded`);
    const { scale, shift } = bnAffine(this.conv_bn);
    into.conv.weight.data = scaleOutChannels(this.conv.weight.data, scale);
    into.conv_bn = undefined;
    return { module: into, shift };
  }

  override extraRepr(): string {
    const o = this.options;
    const detail = o.branch === 'sa' ? 'SA' : `PSSA L=${o.shift}, ${resolveOffsets(o).length} taps, ${o.fill}, embed ${o.embed}, weighting ${o.weighting} ${o.weighting_kernel}×${o.weighting_kernel}`;
    return `${this.inChannels} → ${this.outChannels}${this.stride !== 1 ? `, stride ${this.stride}` : ''}, ${detail}${this.isFolded ? ', folded' : ''}`;
  }
}

/** X-volution with the PSSA attention branch (spec §4). */
export class XVolution extends XVolutionBase {
  /** The weighting conv: [Cout, D·Cin, k, k] (full) or [Cin, D, k, k] (depthwise); absent for weighting 'none'. */
  attn: Conv2d | undefined;
  attn_q: Conv2d | undefined;
  attn_k: Conv2d | undefined;
  attn_bn: BatchNorm2d | undefined;
  /** Folded 'none' weighting only: BN_a's per-channel scale (its shift went into conv.bias). */
  attn_scale: Parameter | undefined;
  readonly offsets: readonly Offset[];

  constructor(inChannels: number, outChannels: number, args: XVolutionArgs) {
    super(inChannels, outChannels, args);
    const o = this.options;
    this.offsets = resolveOffsets(o);
    const taps = this.offsets.length;
    const k = o.weighting_kernel;
    // With a 1×1 weighting, products are only computed at the output grid; a 3×3 one needs them everywhere and carries the stride.
    const weightingStride = k === 1 ? 1 : this.stride;
    if (o.weighting === 'full') this.attn = kaimingConv(inChannels * taps, outChannels, k, { rng: args.rng, stride: weightingStride });
    else if (o.weighting === 'depthwise') this.attn = kaimingConv(inChannels * taps, inChannels, k, { rng: args.rng, stride: weightingStride, groups: inChannels });
    if (o.embed === 'qk') {
      this.attn_q = kaimingConv(inChannels, inChannels, 1, { rng: args.rng, bias: true });
      this.attn_k = kaimingConv(inChannels, inChannels, 1, { rng: args.rng, bias: true });
    }
    this.attn_bn = new BatchNorm2d(outChannels);
    this.attn_bn.weight.data = filled([outChannels], o.attn_bn_gamma_init);
  }

  /** The transformed features P (before weighting) at the grid they are computed on. */
  products(x: Tensor): Tensor {
    const stride = this.options.weighting_kernel === 1 ? this.stride : 1;
    const centre = sampleGrid(x, stride);
    const query = this.attn_q ? this.attn_q.call(centre) : centre;
    const key = this.attn_k ? this.attn_k.call(x) : x;
    return pssaProducts(query, key, this.offsets, this.options.shift, this.options.fill, stride);
  }

  protected attention(x: Tensor): Tensor {
    const p = this.products(x);
    const [b, , h, w] = p.shape as [number, number, number, number];
    const weighted = this.attn ? this.attn.call(p) : p.reshape(b, this.inChannels, this.offsets.length, h, w).sum(2);
    if (this.attn_bn) return this.attn_bn.call(weighted);
    return this.attn_scale ? weighted.mul(this.attn_scale.reshape(1, -1, 1, 1)) : weighted;
  }

  fold(): XVolution {
    const { module, shift } = this.foldConvBranch(new XVolution(this.inChannels, this.outChannels, { ...this.options, stride: this.stride, rng: new Rng(0) }));
    const a = bnAffine(this.attn_bn!);
    if (this.attn && module.attn) module.attn.weight.data = scaleOutChannels(this.attn.weight.data, a.scale);
    else module.attn_scale = vector(a.scale);
    if (this.attn_q && module.attn_q) copyInto(module.attn_q, this.attn_q);
    if (this.attn_k && module.attn_k) copyInto(module.attn_k, this.attn_k);
    module.attn_bn = undefined;
    module.conv.bias = vector(shift.map((s, i) => s + a.shift[i]!));
    return module;
  }
}

/** X-volution (SA): global multi-head self-attention as the attention branch (spec §6.3). */
export class XVolutionSA extends XVolutionBase {
  sa_q: Conv2d;
  sa_k: Conv2d;
  sa_v: Conv2d;
  sa_proj: Conv2d;
  attn_bn: BatchNorm2d | undefined;
  readonly heads: number;

  constructor(inChannels: number, outChannels: number, args: XVolutionArgs) {
    super(inChannels, outChannels, { ...args, branch: 'sa' });
    const rng = args.rng;
    this.heads = Math.max(1, Math.floor(outChannels / this.options.sa_head_dim));
    if (outChannels % this.heads) throw new ConfigError(`X-volution (SA) ${inChannels} → ${outChannels}: ${this.heads} heads do not divide ${outChannels} channels`);
    this.sa_q = kaimingConv(inChannels, outChannels, 1, { rng, bias: true });
    this.sa_k = kaimingConv(inChannels, outChannels, 1, { rng, bias: true });
    this.sa_v = kaimingConv(inChannels, outChannels, 1, { rng, bias: true });
    this.sa_proj = kaimingConv(outChannels, outChannels, 1, { rng, bias: true });
    this.attn_bn = new BatchNorm2d(outChannels);
    this.attn_bn.weight.data = filled([outChannels], this.options.attn_bn_gamma_init);
  }

  protected attention(x: Tensor): Tensor {
    // Queries only at the output grid; keys and values at full resolution.
    const q = this.sa_q.call(sampleGrid(x, this.stride));
    const y = this.sa_proj.call(globalAttention(q, this.sa_k.call(x), this.sa_v.call(x), this.heads, this.options.sa_chunk));
    return this.attn_bn ? this.attn_bn.call(y) : y;
  }

  fold(): XVolutionSA {
    const { module, shift } = this.foldConvBranch(new XVolutionSA(this.inChannels, this.outChannels, { ...this.options, stride: this.stride, rng: new Rng(0) }));
    const a = bnAffine(this.attn_bn!);
    for (const name of ['sa_q', 'sa_k', 'sa_v'] as const) copyInto(module[name], this[name]);
    module.sa_proj.weight.data = scaleOutChannels(this.sa_proj.weight.data, a.scale);
    const bias = this.sa_proj.bias!.data.toFloat64();
    module.sa_proj.bias = vector(bias.map((bi, i) => bi * a.scale[i]! + a.shift[i]!));
    module.attn_bn = undefined;
    module.conv.bias = vector(shift);
    return module;
  }
}

/** Builds the X-volution of `options.branch`. */
export function createXVolution(inChannels: number, outChannels: number, args: XVolutionArgs): XVolutionBase {
  return args.branch === 'sa' ? new XVolutionSA(inChannels, outChannels, args) : new XVolution(inChannels, outChannels, args);
}

// ------------------------------------------------------------------- hosts

/** A torchvision ResNet with the 3×3 convs of chosen stages replaced by X-volutions (spec §5). */
export interface XResNetConfig extends ResNetConfig, XVolutionOptions {
  /** Residual stages whose 3×3 convs are replaced (1-based: [3] is torchvision's layer3, the paper's best). */
  stages: readonly number[];
  /** Also replace a stage's stride-2 3×3 conv. */
  replace_strided: boolean;
}

/**
 * The options a replaced layer actually uses: `depthwise` and `none` keep
 * the channel count, so a layer that changes it (ResNet-34's strided
 * layer3.0.conv1, 128 → 256) falls back to `full` (spec §6.1).
 */
export function layerOptions(config: XVolutionOptions, site: Pick<ConvBnSite, 'inChannels' | 'outChannels'>): XVolutionOptions {
  const keepsChannels = site.inChannels === site.outChannels;
  return { ...pickOptions(config), weighting: keepsChannels ? config.weighting : 'full' };
}

function pickOptions(c: XVolutionOptions): XVolutionOptions {
  const out = {} as Record<string, unknown>;
  for (const k of Object.keys(XVOLUTION_DEFAULTS)) out[k] = c[k as keyof XVolutionOptions];
  return out as unknown as XVolutionOptions;
}

function xvolutionReplacer(config: XResNetConfig, rng: Rng): ConvBnReplacer {
  return (site) => {
    if (!config.stages.includes(site.stage) || (site.stride !== 1 && !config.replace_strided)) return undefined;
    if (site.groups !== 1) throw new ConfigError(`${site.path}: X-volution replaces ungrouped convs only (groups = ${site.groups})`);
    return createXVolution(site.inChannels, site.outChannels, { ...layerOptions(config, site), stride: site.stride, rng });
  };
}

export class XResNet extends ResNet {
  declare config: XResNetConfig;

  constructor(config: XResNetConfig, rng: Rng) {
    if (!Array.isArray(config.stages) || !config.stages.every((s) => Number.isInteger(s) && s >= 1 && s <= 4)) {
      throw new ConfigError(`xvolution_resnet: stages must list residual stages 1..4, got ${JSON.stringify(config.stages)}`);
    }
    super(config, rng, xvolutionReplacer(config, rng));
  }

  /** The X-volution modules with their paths (e.g. `layer3.0.conv2`). */
  xvolutions(): [string, XVolutionBase][] {
    return this.namedModules().filter((e): e is [string, XVolutionBase] => e[1] instanceof XVolutionBase);
  }

  /** An equivalent inference model: every X-volution BN-folded (spec §7); host layers unchanged. */
  fold(): XResNet {
    const folded = new XResNet(this.config, new Rng(0));
    folded.loadStateDict(this.stateDict());
    for (const block of folded.blocks()) {
      if (block.conv2 instanceof XVolutionBase) block.conv2 = block.conv2.fold();
      if (block instanceof BasicBlock && block.conv1 instanceof XVolutionBase) block.conv1 = block.conv1.fold();
    }
    return folded.nameParameters();
  }
}

// ------------------------------------------------------ checkpoint filter

/**
 * Maps a host ResNet state dict (torchvision keys) onto an X-ResNet (spec §5.2,
 * §7): a replaced pair's `convN.weight` and `bnN.*` become `convN.conv.weight`
 * and `convN.conv_bn.*`; its attention tensors, absent from the host, keep
 * the model's initialisation with attn_bn γ = β = 0, so the X-ResNet starts
 * exactly at the host's function. X-ResNet keys pass through unchanged.
 */
export function xresnetCheckpointFilter(stateDict: ReadonlyMap<string, NDArray>, model: XResNet): Map<string, NDArray> {
  const out = new Map(stateDict);
  const own = model.stateDict();
  for (const [path] of model.xvolutions()) {
    const hostWeight = stateDict.get(`${path}.weight`);
    if (!hostWeight) continue;
    const bn = `${path.replace(/conv(\d+)$/, 'bn$1')}.`;
    out.delete(`${path}.weight`);
    out.set(`${path}.conv.weight`, hostWeight);
    for (const [k, v] of stateDict) {
      if (!k.startsWith(bn)) continue;
      out.delete(k);
      out.set(`${path}.conv_bn.${k.slice(bn.length)}`, v);
    }
    for (const [k, v] of own) {
      if (!k.startsWith(`${path}.`) || out.has(k)) continue;
      const zero = k === `${path}.attn_bn.weight` || k === `${path}.attn_bn.bias`;
      out.set(k, zero ? NDArray.float32(v.shape) : v);
    }
  }
  return out;
}

// ------------------------------------------------------------- metadata

/** The `__metadata__` key of a checkpoint that holds an X-ResNet's options (JSON). */
export const XVOLUTION_METADATA_KEY = 'xvolution_options';

/** The options that change the function or the weight layout, as stored with the weights. */
export interface XVolutionRecord {
  format: 1;
  branch: XVolutionOptions['branch'];
  shift: number;
  /** Resolved tap order (the centre excluded): the products' channel layout. */
  directions: Offset[];
  include_center: boolean;
  fill: XVolutionOptions['fill'];
  embed: XVolutionOptions['embed'];
  weighting: XVolutionOptions['weighting'];
  weighting_kernel: XVolutionOptions['weighting_kernel'];
  conv_kernel: XVolutionOptions['conv_kernel'];
  sa_head_dim: number;
  stages: number[];
  replace_strided: boolean;
}

function recordOf(c: XResNetConfig): XVolutionRecord {
  return {
    format: 1,
    branch: c.branch,
    shift: c.shift,
    directions: resolveOffsets({ directions: c.directions, include_center: false }).map(([dy, dx]) => [dy, dx] as const),
    include_center: c.include_center,
    fill: c.fill,
    embed: c.embed,
    weighting: c.weighting,
    weighting_kernel: c.weighting_kernel,
    conv_kernel: c.conv_kernel,
    sa_head_dim: c.sa_head_dim,
    stages: [...c.stages],
    replace_strided: c.replace_strided,
  };
}

/** The checkpoint metadata record of a config: none of these options is recoverable from tensor shapes. */
export function xvolutionMetadata(config: XResNetConfig): Record<string, string> {
  return { [XVOLUTION_METADATA_KEY]: JSON.stringify(recordOf(config)) };
}

/**
 * Checks a loaded checkpoint's metadata against the config the model is
 * built from; throws a ConfigError naming every option that differs (or
 * saying the record is missing). Returns the stored record.
 */
export function checkXVolutionMetadata(metadata: Readonly<Record<string, string>>, config: XResNetConfig): XVolutionRecord {
  const raw = metadata[XVOLUTION_METADATA_KEY];
  if (raw === undefined) {
    throw new ConfigError(`the checkpoint has no '${XVOLUTION_METADATA_KEY}' metadata: X-volution options (shift, directions, weighting, …) cannot be recovered from tensor shapes; save it with xvolutionMetadata(config)`);
  }
  let stored: XVolutionRecord;
  try {
    stored = JSON.parse(raw) as XVolutionRecord;
  } catch {
    throw new ConfigError(`the checkpoint's '${XVOLUTION_METADATA_KEY}' metadata is not valid JSON`);
  }
  if (stored.format !== 1) throw new ConfigError(`the checkpoint's X-volution record has format ${JSON.stringify(stored.format)}; this version reads format 1`);
  const expected = recordOf(config);
  const diffs = (Object.keys(expected) as (keyof XVolutionRecord)[])
    .filter((k) => JSON.stringify(stored[k]) !== JSON.stringify(expected[k]))
    .map((k) => `${k}: checkpoint ${JSON.stringify(stored[k])}, config ${JSON.stringify(expected[k])}`);
  if (diffs.length) throw new ConfigError(`the checkpoint was saved with other X-volution options (${diffs.join('; ')}); build the model with the checkpoint's options`);
  return stored;
}

// ----------------------------------------------------------- registry

const XRESNET_DEFAULTS: XResNetConfig = {
  block: 'bottleneck',
  layers: [3, 4, 6, 3],
  num_classes: 1000,
  zero_init_residual: false,
  groups: 1,
  width_per_group: 64,
  ...XVOLUTION_DEFAULTS,
  stages: [3],
  replace_strided: true,
};

const HOSTS = {
  resnet34: { block: 'basic', layers: [3, 4, 6, 3] },
  resnet50: { block: 'bottleneck', layers: [3, 4, 6, 3] },
} as const;

/** The spec's variants (§6.1, §6.3): layer3 of ResNet-34/50, PSSA full or depthwise weighting, or SA. */
export const XVOLUTION_VARIANTS: Record<string, { host: keyof typeof HOSTS; options: Partial<XVolutionOptions>; note: string }> = {
  xvolution_resnet34: { host: 'resnet34', options: {}, note: 'PSSA, full 1×1 weighting (the spec default)' },
  xvolution_resnet34_dw: { host: 'resnet34', options: { weighting: 'depthwise' }, note: 'PSSA, depthwise weighting (the strided 128 → 256 conv falls back to full)' },
  xvolution_resnet34_sa: { host: 'resnet34', options: { branch: 'sa' }, note: 'X-volution (SA): global multi-head self-attention branch' },
  xvolution_resnet50: { host: 'resnet50', options: {}, note: 'PSSA, full 1×1 weighting (the spec default)' },
  xvolution_resnet50_dw: { host: 'resnet50', options: { weighting: 'depthwise' }, note: 'PSSA, depthwise weighting' },
  xvolution_resnet50_sa: { host: 'resnet50', options: { branch: 'sa' }, note: 'X-volution (SA): global multi-head self-attention branch' },
};

registerFamily<XResNetConfig>({
  name: 'xvolution_resnet',
  description: 'X-volution (Chen, Wang, Ni, arXiv 2106.02253) in a torchvision ResNet host; no official code or weights: built to the project design spec',
  defaults: XRESNET_DEFAULTS,
  build: (config, rng) => new XResNet(config, rng),
  filterCheckpoint: (sd, model) => xresnetCheckpointFilter(sd, model as XResNet),
});

for (const [name, v] of Object.entries(XVOLUTION_VARIANTS)) {
  registerVariant({
    name,
    family: 'xvolution_resnet',
    config: { ...HOSTS[v.host], ...v.options },
    // The torchvision ResNet training and evaluation pipeline (spec §7). No weights were ever published.
    pretrained: torchvisionPretrained(),
    description: `X-ResNet-${v.host.slice(6)}, layer3 replaced: ${v.note}. No weights published (no official code); initialise from torchvision's ${v.host} with xresnetCheckpointFilter. Paper: +${v.host === 'resnet34' ? '1.2' : '0.9'} top-1 over the host (absolute values not reproduced in the spec).`,
  });
}
