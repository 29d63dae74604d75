/**
 * CeiT — Yuan et al., "Incorporating Convolution Designs into Visual
 * Transformers", ICCV 2021; official code `coeusguo/ceit`, `ceit_model.py`.
 *
 *   image ─ i2t (Image2Tokens: conv 7×7 s2 → BN → max-pool 3 s2; patch conv 4×4 s4)
 *         ─ [cls; tokens] + pos_embed
 *         ─ blocks × depth: x + attn(norm1(x)); x + leff(norm2(x)); collect x[:, 0]
 *         ─ lca over the depth class tokens (+ pos_layer_embed): the last one attends to all
 *         ─ norm ─ head
 *
 * Parity traps reproduced (spec ceit.md §5): LN eps 1e-6 everywhere (the
 * factories' `partial(nn.LayerNorm, eps=1e-6)`), BN eps 1e-5; no activation in
 * I2T and none after LeFF's bn3; LeFF passes the *normalised* class token
 * through, so the residual adds LN2(x_cls); LCA's query uses the first D rows
 * of `lca.attn.qkv` on the last token only, and its residual is the
 * un-normalised last token; the LCA feed-forward is a Linear MLP. Keys keep
 * the official order (a Block declares norm2 before norm1).
 */
import { ConfigError, ShapeError, fmtShape } from '../errors.js';
import type { NDArray } from '../ir/ndarray.js';
import { filled, truncNormal } from '../nn/init.js';
import { Attention, BatchNorm2d, Conv2d, DropPath, Dropout, GELU, Identity, LayerNorm, Linear, MaxPool2d, Mlp } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import { Parameter, type Tensor, concat, stack } from '../tensor/tensor.js';
import { activeTrace, isTracing } from '../tensor/trace.js';
import { ClassifierModel, type PretrainedConfig, imagenetPretrained, registerFamily, registerVariant } from './registry.js';
import { dropPathRates, resamplePosEmbed } from './vit.js';

// ------------------------------------------------------------------- config

/** `Image2Tokens(in_chans=3, out_chans=64, kernel_size=7, stride=2)`. */
export interface Image2TokensOptions {
  in_chans: number;
  out_chans: number;
  kernel_size: number;
  stride: number;
}

/**
 * The official `hybrid_backbone` argument: `true` for `Image2Tokens()`, or the
 * fixtures' object form `{"$module": "Image2Tokens", "kwargs": {...}}`.
 * (The official `HybridEmbed` accepts any CNN; only Image2Tokens is ported.)
 */
export type HybridBackboneSpec = boolean | { readonly $module: 'Image2Tokens'; readonly kwargs?: Partial<Image2TokensOptions> };

/** `functools.partial(torch.nn.LayerNorm, eps=...)`, in the fixtures' object form. */
export interface NormLayerSpec {
  readonly $partial: 'torch.nn.LayerNorm';
  readonly kwargs?: { readonly eps?: number };
}

/** The official `CeIT(...)` constructor options. */
export interface CeitConfig {
  img_size: number;
  /** Patch size on the I2T feature map (4 in every factory: total stride 16). */
  patch_size: number;
  in_chans: number;
  num_classes: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  /** null: head_dim^-0.5. */
  qk_scale: number | null;
  drop_rate: number;
  attn_drop_rate: number;
  drop_path_rate: number;
  hybrid_backbone: HybridBackboneSpec;
  norm_layer: NormLayerSpec;
  /** LeFF depthwise kernel. */
  leff_local_size: number;
  leff_with_bn: boolean;
}

const IMAGE2TOKENS_DEFAULTS: Image2TokensOptions = { in_chans: 3, out_chans: 64, kernel_size: 7, stride: 2 };

function image2TokensOptions(c: CeitConfig): Image2TokensOptions {
  const spec = c.hybrid_backbone;
  if (spec === true) return { ...IMAGE2TOKENS_DEFAULTS, in_chans: c.in_chans };
  if (typeof spec !== 'object' || spec === null || spec.$module !== 'Image2Tokens') {
    throw new ConfigError(`ceit: hybrid_backbone must be true or {"$module": "Image2Tokens", "kwargs": {...}} (the official HybridEmbed needs a backbone), got ${JSON.stringify(spec)}`);
  }
  const kwargs = spec.kwargs ?? {};
  for (const k of Object.keys(kwargs)) if (!(k in IMAGE2TOKENS_DEFAULTS)) throw new ConfigError(`ceit: unknown Image2Tokens option '${k}' (options: ${Object.keys(IMAGE2TOKENS_DEFAULTS).join(', ')})`);
  const opts = { ...IMAGE2TOKENS_DEFAULTS, in_chans: c.in_chans, ...kwargs };
  if (opts.in_chans !== c.in_chans) throw new ConfigError(`ceit: Image2Tokens in_chans ${opts.in_chans} differs from in_chans ${c.in_chans}`);
  return opts;
}

function layerNormEps(spec: NormLayerSpec): number {
  if (typeof spec !== 'object' || spec === null || spec.$partial !== 'torch.nn.LayerNorm') {
    throw new ConfigError(`ceit: norm_layer must be {"$partial": "torch.nn.LayerNorm", "kwargs": {"eps": ...}}, got ${JSON.stringify(spec)}`);
  }
  return spec.kwargs?.eps ?? 1e-5;
}

/** Output size of a conv/pool along one axis (PyTorch's floor rule). */
function convOut(size: number, kernel: number, stride: number, padding: number): number {
  return Math.floor((size + 2 * padding - kernel) / stride) + 1;
}

function validateCeitConfig(c: CeitConfig): void {
  const positive = ['img_size', 'patch_size', 'in_chans', 'embed_dim', 'depth', 'num_heads', 'leff_local_size'] as const;
  for (const k of positive) if (!Number.isInteger(c[k]) || c[k] < 1) throw new ConfigError(`ceit: ${k} must be a positive integer, got ${c[k]}`);
  if (!Number.isInteger(c.num_classes) || c.num_classes < 0) throw new ConfigError(`ceit: num_classes must be a non-negative integer, got ${c.num_classes}`);
  if (c.embed_dim % c.num_heads) throw new ConfigError(`ceit: embed_dim ${c.embed_dim} is not divisible by num_heads ${c.num_heads}`);
  if (c.leff_local_size % 2 === 0) throw new ConfigError(`ceit: leff_local_size must be odd (the depthwise conv pads (k-1)/2 to keep the grid), got ${c.leff_local_size}`);
}

// ------------------------------------------------------------------- blocks

/** I2T's low-level stem: conv k×k stride s (no bias) → BN → max-pool 3 s2 p1. No activation. */
export class Image2Tokens extends Module {
  conv: Conv2d;
  bn: BatchNorm2d;
  maxpool: MaxPool2d;

  constructor(
    readonly opts: Image2TokensOptions,
    rng: Rng,
  ) {
    super();
    const k = opts.kernel_size;
    this.conv = new Conv2d(opts.in_chans, opts.out_chans, k, { rng, stride: opts.stride, padding: Math.floor(k / 2), bias: false });
    this.bn = new BatchNorm2d(opts.out_chans);
    this.maxpool = new MaxPool2d(3, 2, 1);
  }

  /** Feature-map side for an input side (the official code finds it with a dummy forward). */
  outSize(size: number): number {
    const k = this.opts.kernel_size;
    return convOut(convOut(size, k, this.opts.stride, Math.floor(k / 2)), 3, 2, 1);
  }

  forward(x: Tensor): Tensor {
    return this.maxpool.call(this.bn.call(this.conv.call(x)));
  }
}

/** `HybridEmbed`: backbone features → patch conv (p×p, stride p) → [B, N, D] tokens (no class token). */
export class HybridEmbed extends Module {
  backbone: Image2Tokens;
  proj: Conv2d;
  /** Side of the square token grid. */
  readonly grid: number;

  constructor(
    readonly imgSize: number,
    patchSize: number,
    embedDim: number,
    backbone: Image2Tokens,
    rng: Rng,
  ) {
    super();
    this.backbone = backbone;
    this.proj = new Conv2d(backbone.opts.out_chans, embedDim, patchSize, { rng, stride: patchSize });
    this.grid = Math.floor(backbone.outSize(imgSize) / patchSize);
    if (this.grid < 1) throw new ConfigError(`ceit: img_size ${imgSize} gives an empty token grid (I2T map ${backbone.outSize(imgSize)}, patch_size ${patchSize})`);
  }

  get numPatches(): number {
    return this.grid * this.grid;
  }

  forward(x: Tensor): Tensor {
    // The position embedding fixes the resolution (the official code has no interpolation at inference).
    if (x.rank !== 4 || x.dim(2) !== this.imgSize || x.dim(3) !== this.imgSize) {
      throw new ShapeError(`${this.path || 'i2t'}: input ${fmtShape(x.shape)} does not match the model's img_size ${this.imgSize} (expected [B, C, ${this.imgSize}, ${this.imgSize}]; pos_embed holds ${this.numPatches} + 1 tokens); resize the image or build the model with another img_size and resample pos_embed`);
    }
    return this.proj.call(this.backbone.call(x)).flatten(2).transpose(1, 2);
  }
}

/**
 * LeFF on LN2(x) [B, 1 + N, D]: the class token passes through unchanged; the
 * N patch tokens go to a √N×√N map, 1×1 conv → BN → GELU → depthwise k×k →
 * BN → GELU → 1×1 conv → BN (no activation), and back to tokens.
 */
export class LocallyEnhancedFeedForward extends Module {
  conv1: Conv2d;
  conv2: Conv2d;
  conv3: Conv2d;
  act: GELU;
  bn1: BatchNorm2d | undefined;
  bn2: BatchNorm2d | undefined;
  bn3: BatchNorm2d | undefined;

  constructor(dim: number, hidden: number, opts: { rng: Rng; kernel: number; withBn: boolean }) {
    super();
    const { rng, kernel } = opts;
    this.conv1 = new Conv2d(dim, hidden, 1, { rng });
    this.conv2 = new Conv2d(hidden, hidden, kernel, { rng, padding: (kernel - 1) / 2, groups: hidden });
    this.conv3 = new Conv2d(hidden, dim, 1, { rng });
    this.act = new GELU();
    if (opts.withBn) {
      this.bn1 = new BatchNorm2d(hidden);
      this.bn2 = new BatchNorm2d(hidden);
      this.bn3 = new BatchNorm2d(dim);
    }
  }

  forward(x: Tensor): Tensor {
    const [b, n, d] = x.shape as [number, number, number];
    const side = Math.round(Math.sqrt(n - 1));
    if (side * side !== n - 1) throw new ShapeError(`${this.path || 'leff'}: ${n - 1} patch tokens do not form a square grid (LeFF reshapes them to √N×√N)`);
    const [cls, tokens] = x.split([1, n - 1], 1) as [Tensor, Tensor];
    const map = tokens.reshape(b, side, side, d).permute(0, 3, 1, 2);
    const norm = (bn: BatchNorm2d | undefined, h: Tensor) => (bn ? bn.call(h) : h);
    let h = this.act.call(norm(this.bn1, this.conv1.call(map)));
    h = this.act.call(norm(this.bn2, this.conv2.call(h)));
    h = norm(this.bn3, this.conv3.call(h));
    return concat([cls, h.flatten(2).permute(0, 2, 1)], 1);
  }
}

/** Encoder block: x + attn(norm1(x)), x + leff(norm2(x)); the model also takes the class token x[:, 0]. */
export class CeitBlock extends Module {
  drop_path: DropPath;
  norm2: LayerNorm;
  norm1: LayerNorm;
  attn: Attention;
  leff: LocallyEnhancedFeedForward;

  constructor(dim: number, opts: { rng: Rng; heads: number; mlpRatio: number; qkvBias: boolean; qkScale: number | undefined; drop: number; attnDrop: number; dropPath: number; eps: number; kernel: number; withBn: boolean }) {
    super();
    // Declaration order is the official one (norm2 before norm1), which fixes the state-dict order.
    this.drop_path = new DropPath(opts.dropPath);
    this.norm2 = new LayerNorm(dim, { eps: opts.eps });
    this.norm1 = new LayerNorm(dim, { eps: opts.eps });
    this.attn = new Attention(dim, { rng: opts.rng, heads: opts.heads, qkvBias: opts.qkvBias, qkScale: opts.qkScale, attnDrop: opts.attnDrop, projDrop: opts.drop, init: 'trunc_normal' });
    this.leff = new LocallyEnhancedFeedForward(dim, Math.floor(dim * opts.mlpRatio), { rng: opts.rng, kernel: opts.kernel, withBn: opts.withBn });
  }

  forward(x: Tensor): Tensor {
    const y = x.add(this.drop_path.call(this.attn.call(this.norm1.call(x))));
    return y.add(this.drop_path.call(this.leff.call(this.norm2.call(y))));
  }

  /**
   * The official block returns the tuple `(x, x[:, 0])`. `Module.call`
   * returns one tensor, so the pair is recorded here under the official
   * tuple names `path:out.0` / `path:out.1` (next to `path:out` = out.0).
   */
  callWithClassToken(x: Tensor): [Tensor, Tensor] {
    const y = this.call(x);
    const cls = y.select(1, 0);
    const acts = isTracing() && this.path ? activeTrace().activations : undefined;
    acts?.set(`${this.path}:out.0`, y.value);
    acts?.set(`${this.path}:out.1`, cls.value);
    return [y, cls];
  }
}

/**
 * LCA attention on the normalised class tokens z [B, L, D]: the query is the
 * last token through qkv rows 0..D-1; keys and values are all L tokens
 * through rows D..3D-1. Output [B, 1, D].
 */
export class AttentionLCA extends Module {
  qkv: Linear;
  attn_drop: Dropout;
  proj: Linear;
  proj_drop: Dropout;
  readonly scale: number;

  constructor(
    readonly dim: number,
    readonly heads: number,
    opts: { rng: Rng; qkvBias: boolean; qkScale: number | undefined; attnDrop: number; projDrop: number },
  ) {
    super();
    this.scale = opts.qkScale ?? (dim / heads) ** -0.5;
    this.qkv = new Linear(dim, dim * 3, { rng: opts.rng, bias: opts.qkvBias, init: 'trunc_normal' });
    this.attn_drop = new Dropout(opts.attnDrop);
    this.proj = new Linear(dim, dim, { rng: opts.rng, init: 'trunc_normal' });
    this.proj_drop = new Dropout(opts.projDrop);
  }

  forward(x: Tensor): Tensor {
    const [b, l, c] = x.shape as [number, number, number];
    const hd = c / this.heads;
    const { weight, bias } = this.qkv;
    const linear = (t: Tensor, rows: [number, number]) => {
      const y = t.matmul(weight.slice(0, rows[0], rows[1]).mT);
      return bias ? y.add(bias.slice(0, rows[0], rows[1])) : y;
    };
    const q = linear(x.slice(1, l - 1, l), [0, c]).reshape(b, 1, this.heads, hd).permute(0, 2, 1, 3);
    const kv = linear(x, [c, 3 * c]).reshape(b, l, 2, this.heads, hd).permute(2, 0, 3, 1, 4);
    const [k, v] = [kv.select(0, 0), kv.select(0, 1)];
    const attn = this.attn_drop.call(q.matmul(k.mT).mul(this.scale).softmax(-1));
    const y = attn.matmul(v).transpose(1, 2).reshape(b, 1, c);
    return this.proj_drop.call(this.proj.call(y));
  }
}

/** The LCA block on the stacked class tokens S [B, L, D]: y = S[:, -1] + attn(norm1(S)); y + feedforward(norm2(y)). No drop-path. */
export class CeitLcaBlock extends Module {
  drop_path: Identity;
  norm2: LayerNorm;
  norm1: LayerNorm;
  attn: AttentionLCA;
  feedforward: Mlp;

  constructor(dim: number, opts: { rng: Rng; heads: number; mlpRatio: number; qkvBias: boolean; qkScale: number | undefined; drop: number; attnDrop: number; eps: number }) {
    super();
    this.drop_path = new Identity();
    this.norm2 = new LayerNorm(dim, { eps: opts.eps });
    this.norm1 = new LayerNorm(dim, { eps: opts.eps });
    this.attn = new AttentionLCA(dim, opts.heads, { rng: opts.rng, qkvBias: opts.qkvBias, qkScale: opts.qkScale, attnDrop: opts.attnDrop, projDrop: opts.drop });
    this.feedforward = new Mlp(dim, Math.floor(dim * opts.mlpRatio), { rng: opts.rng, drop: opts.drop, init: 'trunc_normal' });
  }

  forward(x: Tensor): Tensor {
    const l = x.dim(1);
    const y = x.slice(1, l - 1, l).add(this.attn.call(this.norm1.call(x)));
    return y.add(this.feedforward.call(this.norm2.call(y)));
  }
}

// -------------------------------------------------------------------- model

export class CeIT extends ClassifierModel {
  cls_token: Parameter;
  pos_embed: Parameter;
  pos_layer_embed: Parameter;
  i2t: HybridEmbed;
  pos_drop: Dropout;
  blocks: CeitBlock[];
  lca: CeitLcaBlock;
  norm: LayerNorm;
  head: Linear | Identity;
  numClasses: number;
  config: CeitConfig;

  constructor(config: CeitConfig, rng: Rng) {
    super();
    validateCeitConfig(config);
    this.config = config;
    this.numClasses = config.num_classes;
    const d = config.embed_dim;
    const eps = layerNormEps(config.norm_layer);
    // The official `qk_scale or head_dim ** -0.5`.
    const qkScale = config.qk_scale || undefined;
    this.i2t = new HybridEmbed(config.img_size, config.patch_size, d, new Image2Tokens(image2TokensOptions(config), rng), rng);
    this.cls_token = new Parameter(truncNormal(rng, [1, 1, d]));
    this.pos_embed = new Parameter(truncNormal(rng, [1, this.i2t.numPatches + 1, d]));
    this.pos_drop = new Dropout(config.drop_rate);
    const common = { rng, heads: config.num_heads, mlpRatio: config.mlp_ratio, qkvBias: config.qkv_bias, qkScale, drop: config.drop_rate, attnDrop: config.attn_drop_rate, eps };
    this.blocks = dropPathRates(config.drop_path_rate, config.depth).map(
      (dropPath) => new CeitBlock(d, { ...common, dropPath, kernel: config.leff_local_size, withBn: config.leff_with_bn }),
    );
    this.lca = new CeitLcaBlock(d, common);
    // Zero-initialised and never re-initialised in the official code.
    this.pos_layer_embed = new Parameter(filled([1, config.depth, d], 0));
    this.norm = new LayerNorm(d, { eps });
    this.head = config.num_classes > 0 ? new Linear(d, config.num_classes, { rng, init: 'trunc_normal' }) : new Identity();
  }

  /** The normalised LCA class token, [B, D] (the official forward_features). */
  forwardFeatures(x: Tensor): Tensor {
    const b = x.dim(0);
    const t = this.i2t.call(x);
    let h = this.pos_drop.call(concat([this.cls_token.expand(b, -1, -1), t], 1).add(this.pos_embed));
    const classTokens: Tensor[] = [];
    for (const blk of this.blocks) {
      const [y, cls] = blk.callWithClassToken(h);
      h = y;
      classTokens.push(cls);
    }
    const s = stack(classTokens, 1).add(this.pos_layer_embed);
    return this.norm.call(this.lca.call(s)).reshape(b, -1);
  }

  forwardHead(x: Tensor, preLogits = false): Tensor {
    return preLogits ? x : this.head.call(x);
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.head = numClasses > 0 ? new Linear(this.config.embed_dim, numClasses, { rng, init: 'trunc_normal' }) : new Identity();
    this.numClasses = numClasses;
    this.config = { ...this.config, num_classes: numClasses };
    this.nameParameters();
  }
}

// ------------------------------------------------------- checkpoint filter

/**
 * Brings the official checkpoint's weights (unwrapped from `{'model',
 * 'model_ema', ...}` by the loader) into `model`'s key space. As the official `--finetune` path does, a
 * `head` of another shape is dropped (it then shows as missing) and
 * `pos_embed` is resampled to the model's grid — bilinearly here, bicubic in
 * main.py (see `resamplePosEmbed`).
 */
export function ceitCheckpointFilter(sd: ReadonlyMap<string, NDArray>, model: CeIT): Map<string, NDArray> {
  const own = new Map(model.namedTensors());
  const out = new Map<string, NDArray>();
  for (const [k, v] of sd) {
    const target = own.get(k)?.data.shape;
    if (k.startsWith('head.') && target && target.join() !== v.shape.join()) continue;
    const resample = k === 'pos_embed' && target !== undefined && target[1] !== v.shape[1];
    out.set(k, resample ? resamplePosEmbed(v, [model.i2t.grid, model.i2t.grid], 1) : v);
  }
  return out;
}

// ------------------------------------------------------ pretrained configs

const CEIT_WEIGHTS_URL = 'https://drive.google.com/file/d/1S19SQUic9ILBGNkcJTOy74MGoj-JRM4x/view';

/** DeiT evaluation transform: resize int(256/224·S), centre crop S, bicubic, ImageNet mean/std. */
function ceitPretrained(imgSize: number, top1: number | undefined, notes?: string): PretrainedConfig {
  return imagenetPretrained({
    inputSize: [3, imgSize, imgSize],
    ...(top1 === undefined
      ? {}
      : {
          weights: { url: CEIT_WEIGHTS_URL, format: 'pth', top1, notes: `one Google Drive file for all official CeiT models (its contents are not listed in the repo); a DeiT-style {'model', 'model_ema', ...} checkpoint${notes ? `; ${notes}` : ''}` },
          paperTop1: top1,
        }),
  });
}

// -------------------------------------------------------------- registry

/** `ceit_tiny_patch16_224()`: the canonical variant, also the family defaults. */
const CEIT_DEFAULTS: CeitConfig = {
  img_size: 224,
  patch_size: 4,
  in_chans: 3,
  num_classes: 1000,
  embed_dim: 192,
  depth: 12,
  num_heads: 3,
  mlp_ratio: 4,
  qkv_bias: true,
  qk_scale: null,
  drop_rate: 0,
  attn_drop_rate: 0,
  drop_path_rate: 0,
  hybrid_backbone: { $module: 'Image2Tokens', kwargs: {} },
  norm_layer: { $partial: 'torch.nn.LayerNorm', kwargs: { eps: 1e-6 } },
  leff_local_size: 3,
  leff_with_bn: true,
};

registerFamily<CeitConfig>({
  name: 'ceit',
  description: 'CeiT (Yuan et al., ICCV 2021, "Incorporating Convolution Designs into Visual Transformers"); official code coeusguo/ceit, ceit_model.py',
  defaults: CEIT_DEFAULTS,
  build: (config, rng) => new CeIT(config, rng),
  filterCheckpoint: (sd, model) => ceitCheckpointFilter(sd, model as CeIT),
});

const CEIT_SIZES = {
  tiny: { embed_dim: 192, num_heads: 3 },
  small: { embed_dim: 384, num_heads: 6 },
  base: { embed_dim: 768, num_heads: 12 },
} as const;

/** README top-1 (ImageNet, 300 epochs; CeiT-B: 150 epochs, 81.9 at 100). */
const CEIT_TOP1 = {
  tiny: { 224: 76.4, 384: 78.8 },
  small: { 224: 82.0, 384: 83.3 },
  base: { 224: 82.5, 384: undefined },
} as const;

for (const size of ['tiny', 'small', 'base'] as const) {
  for (const imgSize of [224, 384] as const) {
    const name = imgSize === 224 ? `ceit_${size}` : `ceit_${size}_384`;
    const official = size !== 'base' || imgSize === 224;
    registerVariant({
      name,
      family: 'ceit',
      config: { ...CEIT_SIZES[size], img_size: imgSize },
      pretrained: ceitPretrained(imgSize, CEIT_TOP1[size][imgSize], size === 'base' ? 'the README lists CeiT-B at 100 epochs (81.9) and 150 epochs (82.5)' : undefined),
      description: official
        ? `official ceit_${size}_patch16_${imgSize}()`
        : 'CeiT-B at 384: not an official factory (ceit_model.py has no ceit_base_patch16_384) and no published weights',
    });
  }
}
