/**
 * ViT / DeiT: timm's `VisionTransformer` (`timm/models/vision_transformer.py`,
 * `timm/models/deit.py`), the plain-transformer baseline of the hybrids.
 *
 *   image ─ patch_embed (conv p×p, stride p) ─ [cls; tokens] + pos_embed
 *         ─ blocks × depth (x + attn(norm1(x)); x + mlp(norm2(x)))
 *         ─ norm ─ token 0 ─ head
 *
 * Keys are timm's exactly (`cls_token`, `pos_embed`, `patch_embed.proj`,
 * `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`,
 * `head`), so timm's safetensors and the official DeiT `.pth` files (built on
 * timm; `{'model': state_dict}`) load unchanged. LayerNorm eps is 1e-6, as
 * timm's `partial(nn.LayerNorm, eps=1e-6)`.
 *
 * This file also holds the checkpoint helpers the ViT-like families share:
 * unwrapping a training checkpoint and resampling an absolute position
 * embedding to another grid.
 */
import { ConfigError, ShapeError, fmtShape } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { normal, truncNormal } from '../nn/init.js';
import { Attention, Conv2d, DropPath, Dropout, Identity, LayerNorm, Linear, Mlp } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import { Parameter, type Tensor, concat } from '../tensor/tensor.js';
import { ClassifierModel, type PretrainedConfig, imagenetPretrained, registerFamily, registerVariant } from './registry.js';

// ------------------------------------------------------------------- config

/** timm's `VisionTransformer(...)` options (the subset the classic ViT/DeiT variants use), snake_case as in timm. */
export interface VitConfig {
  img_size: number;
  patch_size: number;
  in_chans: number;
  num_classes: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  /** Dropout before the head (timm ≥ 0.9 meaning). */
  drop_rate: number;
  /** Dropout after adding the position embedding. */
  pos_drop_rate: number;
  /** Dropout after the attention projection and in the MLP. */
  proj_drop_rate: number;
  attn_drop_rate: number;
  /** Stochastic depth, linearly increasing over the blocks from 0. */
  drop_path_rate: number;
}

/** LayerNorm eps of timm's ViT (and of DeiT). */
const VIT_LN_EPS = 1e-6;

function validateVitConfig(c: VitConfig): void {
  const positive = ['img_size', 'patch_size', 'in_chans', 'embed_dim', 'depth', 'num_heads'] as const;
  for (const k of positive) if (!Number.isInteger(c[k]) || c[k] < 1) throw new ConfigError(`vit: ${k} must be a positive integer, got ${c[k]}`);
  if (!Number.isInteger(c.num_classes) || c.num_classes < 0) throw new ConfigError(`vit: num_classes must be a non-negative integer, got ${c.num_classes}`);
  if (c.embed_dim % c.num_heads) throw new ConfigError(`vit: embed_dim ${c.embed_dim} is not divisible by num_heads ${c.num_heads}`);
  if (c.img_size < c.patch_size) throw new ConfigError(`vit: img_size ${c.img_size} is smaller than patch_size ${c.patch_size}`);
}

/** timm's stochastic-depth rule: torch.linspace(0, rate, depth). */
export function dropPathRates(rate: number, depth: number): number[] {
  return Array.from({ length: depth }, (_, i) => (depth > 1 ? (rate * i) / (depth - 1) : 0));
}

// ------------------------------------------------------------------- blocks

/** Image to patch tokens: conv p×p stride p, then [B, D, gh, gw] → [B, gh·gw, D]. */
export class VitPatchEmbed extends Module {
  proj: Conv2d;
  readonly gridSize: readonly [number, number];

  constructor(
    readonly imgSize: number,
    patchSize: number,
    inChans: number,
    embedDim: number,
    rng: Rng,
  ) {
    super();
    this.proj = new Conv2d(inChans, embedDim, patchSize, { rng, stride: patchSize });
    const g = Math.floor(imgSize / patchSize);
    this.gridSize = [g, g];
  }

  get numPatches(): number {
    return this.gridSize[0] * this.gridSize[1];
  }

  forward(x: Tensor): Tensor {
    // timm's strict_img_size: the position embedding fixes the grid.
    if (x.rank !== 4 || x.dim(2) !== this.imgSize || x.dim(3) !== this.imgSize) {
      throw new ShapeError(`${this.path || 'patch_embed'}: input ${fmtShape(x.shape)} does not match the model's img_size ${this.imgSize} (expected [B, C, ${this.imgSize}, ${this.imgSize}]); resize the image or build the model with img_size ${x.rank === 4 ? x.dim(2) : '…'} and resample pos_embed`);
    }
    return this.proj.call(x).flatten(2).transpose(1, 2);
  }
}

/** Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)). */
export class VitBlock extends Module {
  norm1: LayerNorm;
  attn: Attention;
  drop_path1: DropPath;
  norm2: LayerNorm;
  mlp: Mlp;
  drop_path2: DropPath;

  constructor(dim: number, opts: { rng: Rng; heads: number; mlpRatio: number; qkvBias: boolean; projDrop: number; attnDrop: number; dropPath: number }) {
    super();
    this.norm1 = new LayerNorm(dim, { eps: VIT_LN_EPS });
    this.attn = new Attention(dim, { rng: opts.rng, heads: opts.heads, qkvBias: opts.qkvBias, attnDrop: opts.attnDrop, projDrop: opts.projDrop, init: 'trunc_normal' });
    this.drop_path1 = new DropPath(opts.dropPath);
    this.norm2 = new LayerNorm(dim, { eps: VIT_LN_EPS });
    this.mlp = new Mlp(dim, Math.floor(dim * opts.mlpRatio), { rng: opts.rng, drop: opts.projDrop, init: 'trunc_normal' });
    this.drop_path2 = new DropPath(opts.dropPath);
  }

  forward(x: Tensor): Tensor {
    const y = x.add(this.drop_path1.call(this.attn.call(this.norm1.call(x))));
    return y.add(this.drop_path2.call(this.mlp.call(this.norm2.call(y))));
  }
}

// -------------------------------------------------------------------- model

/** ViT with a class token, absolute position embedding and a linear head on the class token (timm's `global_pool='token'`). */
export class VisionTransformer extends ClassifierModel {
  cls_token: Parameter;
  pos_embed: Parameter;
  patch_embed: VitPatchEmbed;
  pos_drop: Dropout;
  blocks: VitBlock[];
  norm: LayerNorm;
  head_drop: Dropout;
  head: Linear | Identity;
  numClasses: number;
  config: VitConfig;

  constructor(config: VitConfig, rng: Rng) {
    super();
    validateVitConfig(config);
    this.config = config;
    this.numClasses = config.num_classes;
    const d = config.embed_dim;
    // timm's init_weights: cls_token N(0, 1e-6), pos_embed trunc_normal(0.02), Linear trunc_normal(0.02) with zero bias.
    this.cls_token = new Parameter(normal(rng, [1, 1, d], 1e-6));
    this.patch_embed = new VitPatchEmbed(config.img_size, config.patch_size, config.in_chans, d, rng);
    this.pos_embed = new Parameter(truncNormal(rng, [1, this.patch_embed.numPatches + 1, d]));
    this.pos_drop = new Dropout(config.pos_drop_rate);
    const dpr = dropPathRates(config.drop_path_rate, config.depth);
    this.blocks = dpr.map(
      (dropPath) =>
        new VitBlock(d, { rng, heads: config.num_heads, mlpRatio: config.mlp_ratio, qkvBias: config.qkv_bias, projDrop: config.proj_drop_rate, attnDrop: config.attn_drop_rate, dropPath }),
    );
    this.norm = new LayerNorm(d, { eps: VIT_LN_EPS });
    this.head_drop = new Dropout(config.drop_rate);
    this.head = config.num_classes > 0 ? new Linear(d, config.num_classes, { rng, init: 'trunc_normal' }) : new Identity();
  }

  /** Tokens after the final norm: [B, 1 + N, D]. */
  forwardFeatures(x: Tensor): Tensor {
    const t = this.patch_embed.call(x);
    const tokens = concat([this.cls_token.expand(t.dim(0), -1, -1), t], 1).add(this.pos_embed);
    const y = this.blocks.reduce((h, blk) => blk.call(h), this.pos_drop.call(tokens));
    return this.norm.call(y);
  }

  /** The class token ([B, D]), then the head. */
  forwardHead(x: Tensor, preLogits = false): Tensor {
    const pooled = this.head_drop.call(x.select(1, 0));
    return preLogits ? pooled : this.head.call(pooled);
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.head = numClasses > 0 ? new Linear(this.config.embed_dim, numClasses, { rng, init: 'trunc_normal' }) : new Identity();
    this.numClasses = numClasses;
    this.config = { ...this.config, num_classes: numClasses };
    this.nameParameters();
  }
}

// ----------------------------------------------------- checkpoint helpers

type Weights = ReadonlyMap<string, NDArray>;

/**
 * PyTorch's bilinear interpolation weights (align_corners=False, no
 * antialias) as an [out, in] matrix: output i samples the input at
 * (i + 0.5)·in/out − 0.5, clamped at 0, between its two neighbours.
 */
export function bilinearWeights(inSize: number, outSize: number): Float64Array {
  const w = new Float64Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let i = 0; i < outSize; i++) {
    const src = Math.max(scale * (i + 0.5) - 0.5, 0);
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const i1 = Math.min(i0 + 1, inSize - 1);
    const l1 = src - i0;
    w[i * inSize + i0] += 1 - l1;
    w[i * inSize + i1] += l1;
  }
  return w;
}

/**
 * Resamples an absolute position embedding [1, prefix + h·w, D] (square old
 * grid) to `newGrid`, keeping the `numPrefixTokens` leading (class) tokens.
 * Bilinear, computed on the CPU in float64 as two small matrix products —
 * timm's `resample_abs_pos_embed` and DeiT's fine-tuning use bicubic, so a
 * resampled embedding is close to theirs but not bit-equal.
 */
export function resamplePosEmbed(posEmbed: NDArray, newGrid: readonly [number, number], numPrefixTokens = 1): NDArray {
  if (posEmbed.rank !== 3 || posEmbed.shape[0] !== 1) throw new ShapeError(`pos_embed must be [1, tokens, dim], got ${fmtShape(posEmbed.shape)}`);
  const [, n, d] = posEmbed.shape as [number, number, number];
  const old = Math.round(Math.sqrt(n - numPrefixTokens));
  if (old * old !== n - numPrefixTokens) throw new ShapeError(`pos_embed ${fmtShape(posEmbed.shape)}: ${n - numPrefixTokens} position tokens after ${numPrefixTokens} prefix token(s) do not form a square grid`);
  const [gh, gw] = newGrid;
  const src = posEmbed.toFloat64();
  const wh = bilinearWeights(old, gh);
  const ww = bilinearWeights(old, gw);
  const out = new Float64Array((numPrefixTokens + gh * gw) * d);
  out.set(src.subarray(0, numPrefixTokens * d));
  // rows[y, j, c] = Σ_i wh[y, i] · grid[i, j, c], then out[y, x, c] = Σ_j ww[x, j] · rows[y, j, c]
  const rows = new Float64Array(gh * old * d);
  for (let y = 0; y < gh; y++) {
    for (let i = 0; i < old; i++) {
      const a = wh[y * old + i]!;
      if (a === 0) continue;
      for (let j = 0; j < old; j++) {
        const s = (numPrefixTokens + i * old + j) * d;
        const r = (y * old + j) * d;
        for (let c = 0; c < d; c++) rows[r + c]! += a * src[s + c]!;
      }
    }
  }
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < gw; x++) {
      const o = (numPrefixTokens + y * gw + x) * d;
      for (let j = 0; j < old; j++) {
        const a = ww[x * old + j]!;
        if (a === 0) continue;
        const r = (y * old + j) * d;
        for (let c = 0; c < d; c++) out[o + c]! += a * rows[r + c]!;
      }
    }
  }
  const shape = [1, numPrefixTokens + gh * gw, d];
  return posEmbed.dtype === 'float64' ? NDArray.float64(shape, out) : NDArray.float32(shape, out);
}

/**
 * timm's `checkpoint_filter_fn` for the classic ViT/DeiT checkpoints (already
 * unwrapped from `{'model': ...}` by the loader): drops the old `pre_logits`
 * layer and resamples `pos_embed` (bilinearly, see `resamplePosEmbed`) when
 * the model's grid differs from the checkpoint's.
 */
export function vitCheckpointFilter(sd: Weights, model: VisionTransformer): Map<string, NDArray> {
  const out = new Map<string, NDArray>();
  for (const [k, v] of sd) {
    if (k.startsWith('pre_logits.')) continue;
    const resample = k === 'pos_embed' && v.shape[1] !== model.pos_embed.data.shape[1];
    out.set(k, resample ? resamplePosEmbed(v, model.patch_embed.gridSize, 1) : v);
  }
  return out;
}

// ------------------------------------------------------ pretrained configs

/** timm's ViT `_cfg`: Inception mean/std (0.5), crop 0.9, bicubic — the augreg weights were trained with it. */
function augregPretrained(tag: string, top1: number): PretrainedConfig {
  return {
    inputSize: [3, 224, 224],
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    interpolation: 'bicubic',
    cropPct: 0.9,
    numClasses: 1000,
    weights: {
      url: `https://huggingface.co/timm/${tag}/resolve/main/model.safetensors`,
      format: 'safetensors',
      top1,
      notes: `timm's ${tag} (How to train your ViT: ImageNet-21k pretraining, ImageNet-1k fine-tuning); top-1 is timm's re-evaluation at crop 0.9`,
    },
  };
}

/**
 * DeiT's evaluation transform (resize int(256/224·224) = 256, centre crop 224,
 * ImageNet mean/std). timm's deit `_cfg` says crop 0.9; the paper's numbers
 * were measured at 0.875.
 */
function deitPretrained(file: string, timmTop1: number, paperTop1: number): PretrainedConfig {
  return imagenetPretrained({
    weights: {
      url: `https://dl.fbaipublicfiles.com/deit/${file}`,
      format: 'pth',
      top1: timmTop1,
      notes: `official DeiT checkpoint ({'model': state_dict}); also on the Hugging Face hub as timm/${file.replace(/-[0-9a-f]+\.pth$/, '')}.fb_in1k (safetensors). top-1 is timm's re-evaluation at crop 0.9`,
    },
    paperTop1,
  });
}

// -------------------------------------------------------------- registry

const VIT_DEFAULTS: VitConfig = {
  img_size: 224,
  patch_size: 16,
  in_chans: 3,
  num_classes: 1000,
  embed_dim: 768,
  depth: 12,
  num_heads: 12,
  mlp_ratio: 4,
  qkv_bias: true,
  drop_rate: 0,
  pos_drop_rate: 0,
  proj_drop_rate: 0,
  attn_drop_rate: 0,
  drop_path_rate: 0,
};

registerFamily<VitConfig>({
  name: 'vit',
  description: 'ViT (Dosovitskiy et al., ICLR 2021) and DeiT (Touvron et al., ICML 2021), as timm\'s VisionTransformer (huggingface/pytorch-image-models, timm/models/vision_transformer.py, deit.py)',
  defaults: VIT_DEFAULTS,
  build: (config, rng) => new VisionTransformer(config, rng),
  filterCheckpoint: (sd, model) => vitCheckpointFilter(sd, model as VisionTransformer),
});

const SIZES = {
  tiny: { label: 'Ti', embed_dim: 192, num_heads: 3 },
  small: { label: 'S', embed_dim: 384, num_heads: 6 },
  base: { label: 'B', embed_dim: 768, num_heads: 12 },
} as const;

/** DeiT checkpoints and top-1 (timm's results-imagenet.csv; paper Table 2). */
const DEIT = {
  tiny: { file: 'deit_tiny_patch16_224-a1311bcf.pth', timm: 72.19, paper: 72.2 },
  small: { file: 'deit_small_patch16_224-cd65a155.pth', timm: 79.856, paper: 79.8 },
  base: { file: 'deit_base_patch16_224-b5f2ef4d.pth', timm: 81.98, paper: 81.8 },
} as const;

/** timm's default (first-listed) ViT tags and their top-1 (results-imagenet.csv). */
const AUGREG = {
  tiny: { tag: 'vit_tiny_patch16_224.augreg_in21k_ft_in1k', top1: 75.452 },
  small: { tag: 'vit_small_patch16_224.augreg_in21k_ft_in1k', top1: 81.402 },
  base: { tag: 'vit_base_patch16_224.augreg2_in21k_ft_in1k', top1: 85.108 },
} as const;

for (const size of ['tiny', 'small', 'base'] as const) {
  const { label, embed_dim, num_heads } = SIZES[size];
  const config = { patch_size: 16, depth: 12, embed_dim, num_heads };
  const deit = DEIT[size];
  // The short names are aliases of timm's full names.
  for (const name of [`deit_${size}_patch16_224`, `deit_${size}`]) {
    registerVariant({ name, family: 'vit', config, pretrained: deitPretrained(deit.file, deit.timm, deit.paper), description: `DeiT-${label}/16 at 224 (timm deit_${size}_patch16_224)` });
  }
  registerVariant({ name: `vit_${size}_patch16_224`, family: 'vit', config, pretrained: augregPretrained(AUGREG[size].tag, AUGREG[size].top1), description: `ViT-${label}/16 at 224 (timm vit_${size}_patch16_224)` });
}
