/**
 * MixFormer — Chen et al., "MixFormer: Mixing Features across Windows and
 * Dimensions", CVPR 2022 (Baidu; arXiv 2204.02557). Not the MCG-NJU tracking
 * model of the same name.
 *
 * Official code: PaddlePaddle only, `PaddlePaddle/PaddleClas` pull request
 * #1820 (never merged), `ppcls/arch/backbone/model_zoo/mixformer.py`. Keys
 * and forward follow it (and its faithful PyTorch port
 * `juniorkowal/mixformer-lambdalayers`, which made the parity fixtures).
 *
 * A four-stage window transformer without shifted windows. Each block's
 * mixing attention runs window self-attention on C/2 channels in parallel
 * with a 3×3 depthwise-conv branch on C channels; the branches exchange a
 * channel gate (conv → V of the attention) and a spatial gate (attention →
 * conv), then are concatenated and projected.
 *
 * Layout: blocks → stages → model → checkpoint filter (Paddle `.pdparams`)
 * → pretrained configs → registered variants.
 */
import { ConfigError, ShapeError, fmtShape } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { filled, normal, truncNormal } from '../nn/init.js';
import { BatchNorm2d, Conv2d, Dropout, DropPath, GELU, Identity, LayerNorm, Linear, Mlp, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import { Parameter, type Tensor, concat } from '../tensor/tensor.js';
import { fromPaddleIfNeeded } from './paddle.js';
import { ClassifierModel, type PretrainedConfig, imagenetPretrained, registerFamily, registerVariant } from './registry.js';

/** The official `MixFormer(...)` constructor options (PaddleClas names). */
export interface MixFormerConfig {
  /** Only sizes the absolute position embedding (`ape`); any input whose sides are multiples of 32 runs. */
  img_size: number;
  patch_size: number;
  in_chans: number;
  /** PaddleClas' name for the number of classes (0: no head, the pooled 1280 features are the output). */
  class_num: number;
  /** timm/PyTorch alias of class_num; takes precedence when set. */
  num_classes?: number;
  /** Stage-0 width C (stages are C·[1, 2, 4, 8]) or the four widths. */
  embed_dim: number | readonly number[];
  depths: readonly number[];
  num_heads: readonly number[];
  window_size: number;
  dwconv_kernel_size: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  /** Overrides head_dim^-0.5 (null: the default). */
  qk_scale: number | null;
  drop_rate: number;
  attn_drop_rate: number;
  drop_path_rate: number;
  /** Absolute position embedding on the stem tokens. */
  ape: boolean;
  /** LayerNorm after the stem. */
  patch_norm: boolean;
}

/** The official constructor's defaults. */
export const MIXFORMER_DEFAULTS: MixFormerConfig = {
  img_size: 224,
  patch_size: 4,
  in_chans: 3,
  class_num: 1000,
  num_classes: undefined,
  embed_dim: 96,
  depths: [2, 2, 6, 2],
  num_heads: [3, 6, 12, 24],
  window_size: 7,
  dwconv_kernel_size: 3,
  mlp_ratio: 4,
  qkv_bias: true,
  qk_scale: null,
  drop_rate: 0,
  attn_drop_rate: 0,
  drop_path_rate: 0.1,
  ape: false,
  patch_norm: true,
};

/** Width of the head's per-token projection (`last_proj`), fixed in the official code. */
const LAST_PROJ_DIM = 1280;

// ------------------------------------------------------------ initialisers

/** PaddleClas' `trunc_normal_`: TruncatedNormal(std 0.02), cut at ±2 std. */
function paddleTruncNormal(rng: Rng, shape: readonly number[]): NDArray<'float32'> {
  return truncNormal(rng, shape, 0.02, -0.04, 0.04);
}

/**
 * Narrows a std-0.02 normal draw (our `trunc_normal` init, cut at ±2
 * absolute) to Paddle's ±2 std by redrawing the values outside: the result
 * is the ±0.04 truncated normal without drawing every weight twice.
 */
function paddleTruncate(a: NDArray, rng: Rng): void {
  const d = a.data as Float32Array;
  for (let i = 0; i < d.length; i++) while (d[i]! < -0.04 || d[i]! > 0.04) d[i] = rng.normal() * 0.02;
}

/** Linear with PaddleClas' `_init_weights`: trunc-normal weight, zero bias. */
function linear(inFeatures: number, outFeatures: number, rng: Rng, bias = true): Linear {
  const l = new Linear(inFeatures, outFeatures, { rng, bias, init: 'trunc_normal' });
  paddleTruncate(l.weight.data, rng);
  return l;
}

/** Conv2D with Paddle's default init: N(0, √(2 / (k·k·in_channels))) weight, zero bias. */
function conv(inChannels: number, outChannels: number, kernel: number, rng: Rng, opts: { stride?: number; padding?: number; groups?: number } = {}): Conv2d {
  const c = new Conv2d(inChannels, outChannels, kernel, { rng, ...opts });
  c.weight.data = normal(rng, c.weight.data.shape, Math.sqrt(2 / (kernel * kernel * inChannels)));
  c.bias!.data = filled([outChannels], 0);
  return c;
}

// ---------------------------------------------------------- window helpers

/** [B, H, W, C] → [B·nW, ws·ws, C]: windows row-major over the grid, all windows of image 0 first. */
function windowPartition(x: Tensor, ws: number): Tensor {
  const [b, h, w, c] = x.shape as [number, number, number, number];
  return x
    .reshape(b, h / ws, ws, w / ws, ws, c)
    .permute(0, 1, 3, 2, 4, 5)
    .reshape(-1, ws * ws, c);
}

/** Inverse of windowPartition: [B·nW, ws·ws, C] → [B, H, W, C]. */
function windowReverse(windows: Tensor, ws: number, h: number, w: number): Tensor {
  const c = windows.dim(-1);
  return windows
    .reshape(-1, h / ws, w / ws, ws, ws, c)
    .permute(0, 1, 3, 2, 4, 5)
    .reshape(-1, h, w, c);
}

/**
 * Windows to an NCHW map (the official `window_reverse2`, one 6-D permute there). Done as windows → NHWC → NCHW:
 * the same tensor, but each step moves contiguous runs (a window row of ws·C values, then one axis), where ONNX
 * Runtime's transpose of the 6-D permute moves single values: 7× as long at 8×56×56×64.
 */
function windowsToImage(windows: Tensor, ws: number, h: number, w: number): Tensor {
  return windowReverse(windows, ws, h, w).permute(0, 3, 1, 2);
}

/**
 * An NCHW map to windows (the official `window_partition2`), NCHW → NHWC → windows for the same reason. ONNX
 * Runtime would merge these two transposes back into the 6-D one; the ONNX lowering keeps them apart
 * (`reshapeSource` in `src/backends/onnx/emit/layout.ts`).
 */
function imageToWindows(x: Tensor, ws: number): Tensor {
  return windowPartition(x.permute(0, 2, 3, 1), ws);
}

/**
 * Zero-pads a [B, H, W, C] map at the bottom of H and the right of W up to
 * multiples of `ws`. Paddle's `F.pad(x, [0, 0, 0, pad_b, 0, pad_r, 0, 0])`
 * pads from the first axis, so this is what the official code does; the
 * PyTorch port copies the list into torch's last-axis-first order and swaps
 * H and W (mixformer.md §6.3), which only agrees when H ≡ W (mod ws).
 */
function padToWindows(x: Tensor, ws: number): Tensor {
  const [, h, w] = x.shape as [number, number, number, number];
  const padBottom = (ws - (h % ws)) % ws;
  const padRight = (ws - (w % ws)) % ws;
  // Tensor.pad takes torch's order: (C before, C after, W before, W after, H before, H after).
  return x.pad([0, 0, 0, padRight, 0, padBottom]);
}

/** Swin's relative-position index: index[i, j] = (yi − yj + w − 1)·(2w − 1) + (xi − xj + w − 1). */
function relativePositionIndex(ws: number): NDArray<'int64'> {
  const n = ws * ws;
  const idx = new Array<number>(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const dy = Math.floor(i / ws) - Math.floor(j / ws);
      const dx = (i % ws) - (j % ws);
      idx[i * n + j] = (dy + ws - 1) * (2 * ws - 1) + (dx + ws - 1);
    }
  }
  return NDArray.int64([n, n], idx);
}

// ------------------------------------------------------------------ blocks

/**
 * A module on [B, H·W, C] tokens whose spatial size (H, W) is not a tensor:
 * the caller sets it before each call, as the official code passes `H, W`
 * (or sets `blk.H, blk.W`) next to the tokens.
 */
export abstract class MixFormerGridModule extends Module {
  protected inputSize: readonly [number, number] | undefined;

  /** Sets the (H, W) of the next call's tokens; returns this for chaining into `.call`. */
  at(h: number, w: number): this {
    this.inputSize = [h, w];
    return this;
  }

  /** The (H, W) of `x`, checked against its token count. */
  protected grid(x: Tensor): [number, number] {
    if (!this.inputSize) throw new ShapeError(`${this.where()}: the token grid size (H, W) was not set; call at(h, w) before call(x)`);
    const [h, w] = this.inputSize;
    if (x.rank !== 3 || x.dim(1) !== h * w) throw new ShapeError(`${this.where()}: expected tokens [B, ${h}·${w}, C], got ${fmtShape(x.shape)}`);
    return [h, w];
  }

  protected where(): string {
    return `${this.constructor.name} '${this.path || '?'}'`;
  }
}

/** Stem (`patch_embed`, the official ConvEmbed): three 3×3 conv-BN-GELU (the first strided), a patch_size/2 patchifying conv, LN. Output NCHW. */
export class MixFormerConvEmbed extends Module {
  stem: Sequential;
  proj: Conv2d;
  norm: LayerNorm | undefined;
  readonly patchSize: number;

  constructor(opts: { patchSize: number; inChans: number; embedDim: number; patchNorm: boolean; rng: Rng }) {
    super();
    const { patchSize: p, inChans, embedDim: c, rng } = opts;
    const half = Math.floor(c / 2);
    this.patchSize = p;
    this.stem = new Sequential(
      conv(inChans, half, 3, rng, { stride: Math.floor(p / 2), padding: 1 }),
      new BatchNorm2d(half),
      new GELU(),
      conv(half, half, 3, rng, { padding: 1 }),
      new BatchNorm2d(half),
      new GELU(),
      conv(half, half, 3, rng, { padding: 1 }),
      new BatchNorm2d(half),
      new GELU(),
    );
    this.proj = conv(half, c, Math.floor(p / 2), rng, { stride: Math.floor(p / 2) });
    this.norm = opts.patchNorm ? new LayerNorm(c) : undefined;
  }

  /** [B, in_chans, H, W] → [B, C, ⌈H/p⌉, ⌈W/p⌉] (zero-padding the bottom/right to multiples of p). */
  forward(x: Tensor): Tensor {
    const p = this.patchSize;
    const [h, w] = [x.dim(-2), x.dim(-1)];
    x = x.pad([0, (p - (w % p)) % p, 0, (p - (h % p)) % p]);
    const y = this.proj.call(this.stem.call(x));
    if (!this.norm) return y;
    const [b, c, hs, ws] = y.shape as [number, number, number, number];
    return this.norm.call(y.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, hs, ws);
  }
}

/**
 * The mixing attention on windows [B·nW, ws·ws, C] of a padded (Hp, Wp)
 * map (set by the block). Step numbers refer to mixformer.md §2.5.
 */
export class MixingAttention extends Module {
  relative_position_bias_table: Parameter;
  relative_position_index: Parameter;
  proj_attn: Linear;
  proj_attn_norm: LayerNorm;
  proj_cnn: Linear;
  proj_cnn_norm: LayerNorm;
  dwconv3x3: Sequential;
  channel_interaction: Sequential;
  projection: Conv2d;
  conv_norm: BatchNorm2d;
  qkv: Linear;
  attn_drop: Dropout;
  spatial_interaction: Sequential;
  attn_norm: LayerNorm;
  proj: Linear;
  proj_drop: Dropout;

  readonly heads: number;
  readonly headDim: number;
  readonly scale: number;
  readonly windowSize: number;
  /** (Hp, Wp) of the padded map the windows tile; set by the block before each call. */
  paddedSize: readonly [number, number] | undefined;

  constructor(dim: number, opts: { rng: Rng; heads: number; windowSize: number; dwconvKernel: number; qkvBias: boolean; qkScale: number | null; attnDrop: number; projDrop: number }) {
    super();
    const { rng, heads, windowSize: ws } = opts;
    const attnDim = Math.floor(dim / 2);
    if (attnDim % heads) throw new ConfigError(`MixingAttention: the attention half of dim ${dim} (${attnDim}) is not divisible by ${heads} heads`);
    this.heads = heads;
    this.headDim = attnDim / heads;
    this.scale = opts.qkScale ?? this.headDim ** -0.5;
    this.windowSize = ws;

    this.relative_position_bias_table = new Parameter(paddleTruncNormal(rng, [(2 * ws - 1) ** 2, heads]));
    this.relative_position_index = new Parameter(relativePositionIndex(ws));
    this.proj_attn = linear(dim, attnDim, rng);
    this.proj_attn_norm = new LayerNorm(attnDim);
    this.proj_cnn = linear(dim, dim, rng);
    this.proj_cnn_norm = new LayerNorm(dim);

    // conv branch
    const k = opts.dwconvKernel;
    this.dwconv3x3 = new Sequential(conv(dim, dim, k, rng, { padding: Math.floor(k / 2), groups: dim }), new BatchNorm2d(dim), new GELU());
    // Integer division, as the official `dim // 8` (3 for B0's 24 channels).
    const ciDim = Math.floor(dim / 8);
    this.channel_interaction = new Sequential(conv(dim, ciDim, 1, rng), new BatchNorm2d(ciDim), new GELU(), conv(ciDim, attnDim, 1, rng));
    this.projection = conv(dim, attnDim, 1, rng);
    this.conv_norm = new BatchNorm2d(attnDim);

    // window-attention branch
    this.qkv = linear(attnDim, 3 * attnDim, rng, opts.qkvBias);
    this.attn_drop = new Dropout(opts.attnDrop);
    const siDim = Math.floor(dim / 16);
    this.spatial_interaction = new Sequential(conv(attnDim, siDim, 1, rng), new BatchNorm2d(siDim), new GELU(), conv(siDim, 1, 1, rng));
    this.attn_norm = new LayerNorm(attnDim);

    this.proj = linear(dim, dim, rng);
    this.proj_drop = new Dropout(opts.projDrop);
  }

  /** bias[h, i, j] = table[index[i, j], h], as [heads, N, N]. */
  private relativePositionBias(): Tensor {
    const n = this.windowSize ** 2;
    return this.relative_position_bias_table
      .indexSelect(0, this.relative_position_index.reshape(-1))
      .reshape(n, n, this.heads)
      .permute(2, 0, 1);
  }

  forward(x: Tensor): Tensor {
    const ws = this.windowSize;
    if (!this.paddedSize) throw new ShapeError(`MixingAttention '${this.path}': the padded map size was not set`);
    const [hp, wp] = this.paddedSize;
    const [bw, n] = x.shape as [number, number, number];
    const [nh, hd] = [this.heads, this.headDim];
    const ca = nh * hd;
    const batch = bw / ((hp / ws) * (wp / ws));

    // 1–2: the two branches' input projections
    let xa = this.proj_attn_norm.call(this.proj_attn.call(x));
    let xc = this.proj_cnn_norm.call(this.proj_cnn.call(x));
    // 3–6: conv branch over whole images; the channel interaction pools the whole padded map
    xc = this.dwconv3x3.call(windowsToImage(xc, ws, hp, wp));
    const channelGate = this.channel_interaction.call(xc.mean([2, 3], true)).sigmoid();
    xc = this.projection.call(xc);

    // 7–10: qkv; windowed attention with relative-position bias, no mask, no output projection.
    // The official code gates V per image and channel (h·hd + d) by the conv branch before
    // attn @ V; the gate is constant over tokens, so it is applied to attn @ V instead, where a
    // channel is the innermost axis (ONNX Runtime broadcasts [.., n, hd] by [.., 1, hd] in
    // spans of hd = 4 elements, 4–5 ns an element).
    const qkv = this.qkv.call(xa).reshape(bw, n, 3, nh, hd).permute(2, 0, 3, 1, 4);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
    const attn = this.attn_drop.call(q.mul(this.scale).matmul(k.mT).add(this.relativePositionBias()).softmax(-1));
    xa = attn.matmul(v).transpose(1, 2).reshape(batch, -1, ca).mul(channelGate.reshape(batch, 1, ca)).reshape(bw, n, ca);

    // 11–13: spatial interaction reads the attention output before attn_norm
    const spatialGate = this.spatial_interaction.call(windowsToImage(xa, ws, hp, wp)).sigmoid();
    xc = imageToWindows(this.conv_norm.call(spatialGate.mul(xc)), ws);
    // 14–15: attention half first, then the conv half
    xa = this.attn_norm.call(xa);
    return this.proj_drop.call(this.proj.call(concat([xa, xc], -1)));
  }
}

/** Mixing block: x + MixingAttention(LN(x)) over 7×7 windows (bottom/right zero-padded), then x + MLP(LN(x)). */
export class MixingBlock extends MixFormerGridModule {
  norm1: LayerNorm;
  attn: MixingAttention;
  drop_path: DropPath;
  norm2: LayerNorm;
  mlp: Mlp;

  readonly windowSize: number;

  constructor(dim: number, opts: { rng: Rng; heads: number; windowSize: number; dwconvKernel: number; mlpRatio: number; qkvBias: boolean; qkScale: number | null; drop: number; attnDrop: number; dropPath: number }) {
    super();
    const { rng } = opts;
    this.windowSize = opts.windowSize;
    this.norm1 = new LayerNorm(dim);
    this.attn = new MixingAttention(dim, { rng, heads: opts.heads, windowSize: opts.windowSize, dwconvKernel: opts.dwconvKernel, qkvBias: opts.qkvBias, qkScale: opts.qkScale, attnDrop: opts.attnDrop, projDrop: opts.drop });
    this.drop_path = new DropPath(opts.dropPath);
    this.norm2 = new LayerNorm(dim);
    this.mlp = new Mlp(dim, Math.floor(dim * opts.mlpRatio), { rng, drop: opts.drop, init: 'trunc_normal' });
    paddleTruncate(this.mlp.fc1.weight.data, rng);
    paddleTruncate(this.mlp.fc2.weight.data, rng);
  }

  /** [B, H·W, C] → [B, H·W, C]. */
  forward(x: Tensor): Tensor {
    const [h, w] = this.grid(x);
    const [b, , c] = x.shape as [number, number, number];
    const ws = this.windowSize;
    const z = padToWindows(this.norm1.call(x).reshape(b, h, w, c), ws);
    const [hp, wp] = [z.dim(1), z.dim(2)];
    this.attn.paddedSize = [hp, wp];
    const y = windowReverse(this.attn.call(windowPartition(z, ws)), ws, hp, wp)
      .slice(1, 0, h)
      .slice(2, 0, w)
      .reshape(b, h * w, c);
    x = x.add(this.drop_path.call(y));
    return x.add(this.drop_path.call(this.mlp.call(this.norm2.call(x))));
  }
}

/** Downsampling between stages: BatchNorm first, then a 2×2 stride-2 conv (C → C'). */
export class ConvMerging extends MixFormerGridModule {
  reduction: Conv2d;
  norm: BatchNorm2d;

  constructor(dim: number, outDim: number, rng: Rng) {
    super();
    this.reduction = conv(dim, outDim, 2, rng, { stride: 2 });
    // BN although the official constructor is handed LayerNorm as norm_layer.
    this.norm = new BatchNorm2d(dim);
  }

  /** [B, H·W, C] → [B, H/2·W/2, C']. */
  forward(x: Tensor): Tensor {
    const [h, w] = this.grid(x);
    if (h % 2 || w % 2) {
      throw new ShapeError(`${this.where()}: the stage map is ${h}×${w}, but merging needs even sides; MixFormer takes inputs whose sides are multiples of 32`);
    }
    const [b, , c] = x.shape as [number, number, number];
    const m = x.reshape(b, h, w, c).permute(0, 3, 1, 2);
    return this.reduction.call(this.norm.call(m)).flatten(2).transpose(1, 2);
  }
}

// ------------------------------------------------------------------ stages

/** One stage (`layers.i`, the official BasicLayer): mixing blocks at one resolution, then (except the last) a ConvMerging. */
export class MixFormerStage extends MixFormerGridModule {
  blocks: MixingBlock[];
  downsample: ConvMerging | undefined;

  constructor(blocks: MixingBlock[], downsample: ConvMerging | undefined) {
    super();
    this.blocks = blocks;
    this.downsample = downsample;
  }

  /** The (H, W) this stage hands to the next one. */
  outputSize(h: number, w: number): [number, number] {
    return this.downsample ? [h / 2, w / 2] : [h, w];
  }

  forward(x: Tensor): Tensor {
    const [h, w] = this.grid(x);
    for (const blk of this.blocks) x = blk.at(h, w).call(x);
    return this.downsample ? this.downsample.at(h, w).call(x) : x;
  }
}

// ------------------------------------------------------------------- model

export class MixFormer extends ClassifierModel {
  absolute_pos_embed: Parameter | undefined;
  patch_embed: MixFormerConvEmbed;
  pos_drop: Dropout;
  layers: MixFormerStage[];
  norm: LayerNorm;
  last_proj: Linear;
  activate: GELU;
  head: Linear | Identity;

  numClasses: number;
  readonly config: MixFormerConfig;
  /** Channels of the last stage. */
  readonly numFeatures: number;

  constructor(config: MixFormerConfig, rng: Rng) {
    super();
    const cfg = (this.config = { ...config });
    const stages = cfg.depths.length;
    const e = cfg.embed_dim;
    const dims = typeof e === 'number' ? cfg.depths.map((_, i) => e * 2 ** i) : [...e];
    if (dims.length !== stages || cfg.num_heads.length !== stages) {
      throw new ConfigError(`MixFormer: embed_dim (${dims.length}), depths (${stages}) and num_heads (${cfg.num_heads.length}) must give one entry per stage`);
    }
    if (cfg.patch_size < 2 || cfg.patch_size % 2) throw new ConfigError(`MixFormer: patch_size must be even (the stem halves twice), got ${cfg.patch_size}`);
    this.numClasses = cfg.num_classes ?? cfg.class_num;
    this.numFeatures = dims[stages - 1]!;

    this.patch_embed = new MixFormerConvEmbed({ patchSize: cfg.patch_size, inChans: cfg.in_chans, embedDim: dims[0]!, patchNorm: cfg.patch_norm, rng });
    const patches = Math.floor(cfg.img_size / cfg.patch_size) ** 2;
    this.absolute_pos_embed = cfg.ape ? new Parameter(paddleTruncNormal(rng, [1, patches, dims[0]!])) : undefined;
    this.pos_drop = new Dropout(cfg.drop_rate);

    // Stochastic depth grows linearly over all blocks.
    const total = cfg.depths.reduce((a, b) => a + b, 0);
    const dpr = (i: number) => (total > 1 ? (cfg.drop_path_rate * i) / (total - 1) : 0);
    let blockIndex = 0;
    this.layers = cfg.depths.map((depth, i) => {
      const blocks = Array.from(
        { length: depth },
        () =>
          new MixingBlock(dims[i]!, {
            rng,
            heads: cfg.num_heads[i]!,
            windowSize: cfg.window_size,
            dwconvKernel: cfg.dwconv_kernel_size,
            mlpRatio: cfg.mlp_ratio,
            qkvBias: cfg.qkv_bias,
            qkScale: cfg.qk_scale,
            drop: cfg.drop_rate,
            attnDrop: cfg.attn_drop_rate,
            dropPath: dpr(blockIndex++),
          }),
      );
      return new MixFormerStage(blocks, i < stages - 1 ? new ConvMerging(dims[i]!, dims[i + 1]!, rng) : undefined);
    });

    this.norm = new LayerNorm(this.numFeatures);
    this.last_proj = linear(this.numFeatures, LAST_PROJ_DIM, rng);
    this.activate = new GELU();
    this.head = this.makeHead(this.numClasses, rng);
  }

  private makeHead(numClasses: number, rng: Rng): Linear | Identity {
    return numClasses > 0 ? linear(LAST_PROJ_DIM, numClasses, rng) : new Identity();
  }

  /** [B, in_chans, H, W] → final-stage tokens after `norm`, [B, H/32·W/32, C4]. */
  forwardFeatures(x: Tensor): Tensor {
    const map = this.patch_embed.call(x);
    let [h, w] = [map.dim(2), map.dim(3)];
    let t = map.flatten(2).transpose(1, 2);
    if (this.absolute_pos_embed) {
      if (t.dim(1) !== this.absolute_pos_embed.shape[1]) {
        throw new ShapeError(`MixFormer 'absolute_pos_embed': the stem gives ${h}×${w} tokens but the embedding was built for img_size ${this.config.img_size}`);
      }
      t = t.add(this.absolute_pos_embed);
    }
    t = this.pos_drop.call(t);
    for (const layer of this.layers) {
      t = layer.at(h, w).call(t);
      [h, w] = layer.outputSize(h, w);
    }
    return this.norm.call(t);
  }

  /** last_proj and GELU per token, then the token mean (the pre-logits, 1280 wide), then `head`. */
  forwardHead(x: Tensor, preLogits = false): Tensor {
    const pooled = this.activate.call(this.last_proj.call(x)).mean(1);
    return preLogits ? pooled : this.head.call(pooled);
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.numClasses = numClasses;
    this.head = this.makeHead(numClasses, rng);
    this.nameParameters();
  }
}

// ------------------------------------------------------- checkpoint filter

// ------------------------------------------------------ pretrained configs

const PADDLE_URL = 'https://paddle-imagenet-models-name.bj.bcebos.com/dygraph';

/** Eval transform of the PaddleClas configs: bicubic resize_short 256, centre crop 224, ImageNet mean/std. */
function mixformerPretrained(name: string | undefined, top1: number): PretrainedConfig {
  return imagenetPretrained({
    inputSize: [3, 224, 224],
    interpolation: 'bicubic',
    cropPct: 224 / 256,
    paperTop1: top1,
    ...(name
      ? {
          weights: {
            url: `${PADDLE_URL}/MixFormer_${name}_pretrained.pdparams`,
            format: 'pdparams' as const,
            top1,
            notes: 'PaddleClas PR #1820 (never merged into develop); Paddle layout, the CLI and loadWeights convert it (see models/paddle.ts). Top-1 as listed in its docs/en/models/MixFormer_en.md.',
          },
        }
      : {}),
  });
}

// ------------------------------------------------------ registered variants

interface VariantRow {
  name: string;
  config: Pick<MixFormerConfig, 'embed_dim' | 'depths' | 'num_heads' | 'drop_path_rate'>;
  top1: number;
  /** File stem of the published weights; B0 and B5 were never published. */
  weights?: string;
}

/** The official factories `MixFormer_B0` … `MixFormer_B6` (mixformer.md §1). */
const VARIANTS: readonly VariantRow[] = [
  { name: 'mixformer_b0', config: { embed_dim: 24, depths: [1, 2, 6, 6], num_heads: [3, 6, 12, 24], drop_path_rate: 0 }, top1: 76.5 },
  { name: 'mixformer_b1', config: { embed_dim: 32, depths: [1, 2, 6, 6], num_heads: [2, 4, 8, 16], drop_path_rate: 0 }, top1: 78.9, weights: 'B1' },
  { name: 'mixformer_b2', config: { embed_dim: 32, depths: [2, 2, 8, 8], num_heads: [2, 4, 8, 16], drop_path_rate: 0.05 }, top1: 80.0, weights: 'B2' },
  { name: 'mixformer_b3', config: { embed_dim: 48, depths: [2, 2, 8, 6], num_heads: [3, 6, 12, 24], drop_path_rate: 0.1 }, top1: 81.7, weights: 'B3' },
  { name: 'mixformer_b4', config: { embed_dim: 64, depths: [2, 2, 8, 8], num_heads: [4, 8, 16, 32], drop_path_rate: 0.2 }, top1: 83.0, weights: 'B4' },
  { name: 'mixformer_b5', config: { embed_dim: 96, depths: [1, 2, 8, 6], num_heads: [6, 12, 24, 48], drop_path_rate: 0.3 }, top1: 83.5 },
  { name: 'mixformer_b6', config: { embed_dim: 96, depths: [2, 4, 16, 12], num_heads: [6, 12, 24, 48], drop_path_rate: 0.5 }, top1: 83.8, weights: 'B6' },
];

registerFamily<MixFormerConfig>({
  name: 'mixformer',
  description: 'MixFormer: Mixing Features across Windows and Dimensions (Chen et al., CVPR 2022; Baidu). Official code: PaddlePaddle/PaddleClas PR #1820 (Paddle only).',
  defaults: MIXFORMER_DEFAULTS,
  build: (config, rng) => new MixFormer(config, rng),
  filterCheckpoint: (sd) => fromPaddleIfNeeded(sd),
});

for (const v of VARIANTS) {
  const c = v.config;
  registerVariant({
    name: v.name,
    family: 'mixformer',
    config: c,
    pretrained: mixformerPretrained(v.weights, v.top1),
    description: `MixFormer-${v.name.slice(-2).toUpperCase()}: C=${String(c.embed_dim)}, depths ${c.depths.join('-')}, heads ${c.num_heads.join('-')}${v.weights ? '' : ' (no published weights)'}`,
  });
}
