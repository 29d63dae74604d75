/**
 * UniFormer — Li et al., "UniFormer: Unifying Convolution and Self-attention
 * for Visual Recognition" (TPAMI 2023, arXiv 2201.09450; ICLR 2022 for the
 * video version). Official code `Sense-X/UniFormer`, `image_classification/`:
 * `models/uniformer.py` (S, S†, S†-dim64, B, B-LS), the token-labelling copy
 * `token_labeling/tlt/models/uniformer.py` (TL S/S†/B, L-LS, 384 fine-tunes)
 * and `models/uniformer_light.py` (XXS, XS with token pruning).
 *
 *   image ─ patch_embed1 ─ blocks1 × CBlock ─ patch_embed2 ─ blocks2 × CBlock     (local MHRA: BN, DW 5×5)
 *         ─ patch_embed3 ─ blocks3 × SABlock ─ patch_embed4 ─ blocks4 × SABlock   (global MHRA: LN, self-attention)
 *         ─ norm (BatchNorm2d) ─ spatial mean ─ head   (TL: + 0.5 · max over tokens of aux_head)
 *
 * Every block starts with the dynamic position embedding x + DW3×3(x).
 * UniFormer-Light replaces the SABlocks by EvoSABlocks: a class token enters
 * at stage 3 and, from the second block on, only the patch tokens with the
 * highest class attention are attended; the rest are merged into one
 * representative token and moved by its update (see EvoSABlock).
 *
 * Parity traps reproduced (spec uniformer.md §8): LN eps 1e-6 in the blocks
 * but 1e-5 in PatchEmbed.norm (plain nn.LayerNorm); the final norm is a
 * BatchNorm2d before the mean; DPE in every block; no activation between
 * conv1 → attn → conv2; exact GELU; layer scale is a per-model option, never
 * the official module-global flag; the TL eval output adds 0.5 · max aux_head.
 *
 * Picking the variant for a checkpoint (head_dim is invisible in the weights):
 * the number of attention heads, embed_dim // head_dim, changes no tensor
 * shape, so a head_dim-32 file loads into a head_dim-64 model without any
 * error and silently loses accuracy (official issues #16, #20, #128). Take
 * the variant from the table the file was downloaded from:
 *   - IN-1k table: `uniformer_small` (64), `uniformer_small_plus` (S†, **32**),
 *     `uniformer_small_plus_dim64` (the "head_dim=64" retrain), `uniformer_base`
 *     (64), `uniformer_base_ls` (64, has `blocks3.N.gamma_*`);
 *   - token-labelling tables (files with `aux_head.*` keys): `uniformer_small_tl`,
 *     `uniformer_small_plus_tl`, `uniformer_base_tl` (all **32**, although the
 *     official factory names are those of the IN-1k models), their retrains
 *     `*_dim64_tl` (64), and `uniformer_large_ls` (64, gammas in every block);
 *   - 384 fine-tunes: `uniformer_{small,small_plus,base}_tl_384` (32),
 *     `uniformer_large_ls_384` (64);
 *   - Light: `uniformer_xxs[_128|_160|_192]`, `uniformer_xs[_192]` (their own family).
 * A strict load does catch the other mix-ups: TL `aux_head`, `gamma_*` keys
 * and the conv stem's `proj.N` keys are unexpected (or missing) elsewhere.
 */
import { ConfigError, ShapeError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { filled } from '../nn/init.js';
import { BatchNorm2d, Conv2d, DropPath, Dropout, GELU, Identity, LayerNorm, Linear, Mlp, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import { Parameter, type Tensor, avgPool2d, concat } from '../tensor/tensor.js';
import { activeTrace, isTracing } from '../tensor/trace.js';
import { convertPaddleStateDict } from './paddle.js';
import { ClassifierModel, type PretrainedConfig, imagenetPretrained, registerFamily, registerVariant } from './registry.js';
import { dropPathRates } from './vit.js';

// ------------------------------------------------------------------- config

/** `functools.partial(torch.nn.LayerNorm, eps=...)`, in the fixtures' object form: the blocks' LayerNorm. */
export interface UniFormerNormLayer {
  readonly $partial: 'torch.nn.LayerNorm';
  readonly kwargs?: { readonly eps?: number };
}

/**
 * Where the layer-scale factors `gamma_1`/`gamma_2` (init `init_value`) live:
 * 'sablocks' as `models/uniformer.py` builds them (`uniformer_base_ls`),
 * 'all' as the token-labelling file does (CBlocks too, `uniformer_large_ls`).
 * The official code switches them on with a module-global flag.
 */
export type UniFormerLayerScale = 'none' | 'sablocks' | 'all';

/** The official `UniFormer(...)` options, plus the layer scale and the TL head that the official code sets elsewhere. */
export interface UniFormerConfig {
  /** Blocks per stage: stages 1–2 CBlocks, 3–4 SABlocks. */
  depth: readonly number[];
  /** The input size of the pretrained weights. Any size divisible by the stem's total stride runs (the official patch stem asserts this size). */
  img_size: number;
  in_chans: number;
  /** 0: no head, the pooled features are the output. */
  num_classes: number;
  embed_dim: readonly number[];
  /** Stage i has embed_dim[i] // head_dim heads (only stages 3–4 use them). Invisible in the weights: see the file comment. */
  head_dim: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  /** null: the attention head size ^ −0.5. */
  qk_scale: number | null;
  drop_rate: number;
  attn_drop_rate: number;
  drop_path_rate: number;
  /** The blocks' LayerNorm (official default partial(nn.LayerNorm, eps=1e-6)). */
  norm_layer: UniFormerNormLayer;
  /** false: 4×4 / 2×2 patch convs with LayerNorm; true: 3×3 stride-2 convs with BN (S†). */
  conv_stem: boolean;
  layer_scale: UniFormerLayerScale;
  /** Initial value of the layer-scale factors. */
  init_value: number;
  /** Token labelling: an `aux_head` on every token, added as 0.5 · max at evaluation. */
  return_dense: boolean;
}

/** The official `UniFormer_Light(...)` options (`models/uniformer_light.py`), plus its global layer-scale flag. */
export interface UniFormerLightConfig {
  depth: readonly number[];
  in_chans: number;
  num_classes: number;
  embed_dim: readonly number[];
  head_dim: number;
  /** Per stage. */
  mlp_ratio: readonly number[];
  qkv_bias: boolean;
  qk_scale: number | null;
  drop_rate: number;
  attn_drop_rate: number;
  drop_path_rate: number;
  norm_layer: UniFormerNormLayer;
  /** true: the two-conv stem for stage 1 (the released models); stages 2–4 always use 2×2 patch convs with LN. */
  conv_stem: boolean;
  /** Fraction of patch tokens each block of stages 3–4 attends to (per stage, per block; 1 = no pruning). */
  prune_ratio: readonly (readonly number[])[];
  /** Weight of a block's class attention in the running token score (per stage, per block). */
  trade_off: readonly (readonly number[])[];
  /** Layer scale in every block (`gamma_1`, `gamma_2`; `gamma_3` on the pruned blocks' fast update). */
  layer_scale: boolean;
  init_value: number;
}

/** PatchEmbed.norm is the plain nn.LayerNorm (eps 1e-5), not `norm_layer`. */
const PATCH_EMBED_LN_EPS = 1e-5;

function normEps(spec: UniFormerNormLayer, family: string): number {
  if (typeof spec !== 'object' || spec === null || spec.$partial !== 'torch.nn.LayerNorm') {
    throw new ConfigError(`${family}: norm_layer must be {"$partial": "torch.nn.LayerNorm", "kwargs": {"eps": ...}}, got ${JSON.stringify(spec)}`);
  }
  return spec.kwargs?.eps ?? 1e-5;
}

function validateCommon(family: string, c: UniFormerConfig | UniFormerLightConfig): void {
  const four = (k: 'depth' | 'embed_dim', min: number) => {
    const v = c[k];
    if (!Array.isArray(v) || v.length !== 4 || !v.every((d) => Number.isInteger(d) && d >= min)) throw new ConfigError(`${family}: ${k} must list 4 integers ≥ ${min} (one per stage), got ${JSON.stringify(v)}`);
  };
  four('depth', 0);
  four('embed_dim', 1);
  for (const k of ['in_chans', 'head_dim'] as const) if (!Number.isInteger(c[k]) || c[k] < 1) throw new ConfigError(`${family}: ${k} must be a positive integer, got ${c[k]}`);
  if (!Number.isInteger(c.num_classes) || c.num_classes < 0) throw new ConfigError(`${family}: num_classes must be a non-negative integer, got ${c.num_classes}`);
  for (const stage of [2, 3]) {
    const dim = c.embed_dim[stage]!;
    const heads = Math.floor(dim / c.head_dim);
    if (heads < 1 || dim % heads) throw new ConfigError(`${family}: stage ${stage + 1} has embed_dim ${dim}, which does not split into embed_dim // head_dim = ${heads} heads (head_dim ${c.head_dim})`);
  }
  normEps(c.norm_layer, family);
}

function validateUniFormerConfig(c: UniFormerConfig): void {
  validateCommon('uniformer', c);
  if (!['none', 'sablocks', 'all'].includes(c.layer_scale)) throw new ConfigError(`uniformer: layer_scale must be 'none', 'sablocks' or 'all', got ${JSON.stringify(c.layer_scale)}`);
  if (!Number.isInteger(c.img_size) || c.img_size < 1) throw new ConfigError(`uniformer: img_size must be a positive integer, got ${c.img_size}`);
}

function validateLightConfig(c: UniFormerLightConfig): void {
  validateCommon('uniformer_light', c);
  if (!Array.isArray(c.mlp_ratio) || c.mlp_ratio.length !== 4) throw new ConfigError(`uniformer_light: mlp_ratio must list 4 ratios (one per stage), got ${JSON.stringify(c.mlp_ratio)}`);
  for (const k of ['prune_ratio', 'trade_off'] as const) {
    for (const stage of [2, 3]) {
      const list = c[k]?.[stage];
      if (!Array.isArray(list) || list.length < c.depth[stage]!) throw new ConfigError(`uniformer_light: ${k}[${stage}] must give a value for each of the ${c.depth[stage]} blocks of stage ${stage + 1}, got ${JSON.stringify(list)}`);
    }
  }
  for (const stage of [2, 3]) {
    const ratios = c.prune_ratio[stage]!.slice(0, c.depth[stage]);
    if (!ratios.every((r) => r > 0 && r <= 1)) throw new ConfigError(`uniformer_light: prune_ratio[${stage}] must be in (0, 1], got ${JSON.stringify(ratios)}`);
  }
  // The token scores come from the class attention of a block that sees every token, and
  // reach stage 4 through the last stage-3 block's pooling, which only a pruning block does.
  if (c.depth[2]! > 0 && c.prune_ratio[2]![0] !== 1) throw new ConfigError(`uniformer_light: the first block of stage 3 must attend to every token (prune_ratio[2][0] = 1) to initialise the token scores, got ${c.prune_ratio[2]![0]}`);
  if (c.depth[3]! > 0 && !(c.depth[2]! > 1 && c.prune_ratio[2]![c.depth[2]! - 1]! < 1)) {
    throw new ConfigError('uniformer_light: the last block of stage 3 must prune (prune_ratio < 1): it pools the token scores to the stage-4 grid');
  }
}

// ------------------------------------------------------------------- blocks

/** `PatchEmbed`: conv k×k stride k, then LayerNorm (eps 1e-5) over the channels of each position. */
export class UniFormerPatchEmbed extends Module {
  norm: LayerNorm;
  proj: Conv2d;

  constructor(
    readonly patchSize: number,
    inChans: number,
    embedDim: number,
    rng: Rng,
  ) {
    super();
    this.norm = new LayerNorm(embedDim, { eps: PATCH_EMBED_LN_EPS });
    this.proj = new Conv2d(inChans, embedDim, patchSize, { rng, stride: patchSize });
  }

  /** [B, C, H, W] → [B, D, H/k, W/k]. */
  forward(x: Tensor): Tensor {
    const [, , h, w] = x.shape as [number, number, number, number];
    const k = this.patchSize;
    if (h % k || w % k) {
      throw new ShapeError(`module '${this.path}': a ${h}×${w} map does not divide into ${k}×${k} patches; UniFormer's patch stem needs an image size divisible by 32`);
    }
    return this.norm.call(this.proj.call(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2);
  }
}

/** `head_embedding` (conv stem, stage 1): conv 3×3 s2 → BN → GELU → conv 3×3 s2 → BN. */
export class UniFormerHeadEmbedding extends Module {
  proj: Sequential;

  constructor(inChans: number, outChans: number, rng: Rng) {
    super();
    const half = Math.floor(outChans / 2);
    this.proj = new Sequential(
      new Conv2d(inChans, half, 3, { rng, stride: 2, padding: 1 }),
      new BatchNorm2d(half),
      new GELU(),
      new Conv2d(half, outChans, 3, { rng, stride: 2, padding: 1 }),
      new BatchNorm2d(outChans),
    );
  }

  forward(x: Tensor): Tensor {
    return this.proj.call(x);
  }
}

/** `middle_embedding` (conv stem, stages 2–4): conv 3×3 s2 → BN. */
export class UniFormerMiddleEmbedding extends Module {
  proj: Sequential;

  constructor(inChans: number, outChans: number, rng: Rng) {
    super();
    this.proj = new Sequential(new Conv2d(inChans, outChans, 3, { rng, stride: 2, padding: 1 }), new BatchNorm2d(outChans));
  }

  forward(x: Tensor): Tensor {
    return this.proj.call(x);
  }
}

/** `CMlp`: the MLP as 1×1 convs on NCHW. */
export class UniFormerCMlp extends Module {
  fc1: Conv2d;
  act: GELU;
  fc2: Conv2d;
  drop: Dropout;

  constructor(dim: number, hidden: number, drop: number, rng: Rng) {
    super();
    this.fc1 = new Conv2d(dim, hidden, 1, { rng });
    this.act = new GELU();
    this.fc2 = new Conv2d(hidden, dim, 1, { rng });
    this.drop = new Dropout(drop);
  }

  forward(x: Tensor): Tensor {
    return this.drop.call(this.fc2.call(this.drop.call(this.act.call(this.fc1.call(x)))));
  }
}

/** Multiplies a residual branch by its layer-scale factor, when the block has one. */
function scaled(gamma: Parameter | undefined, branch: Tensor): Tensor {
  return gamma ? branch.mul(gamma) : branch;
}

/** Options every block takes. */
export interface UniFormerBlockOptions {
  rng: Rng;
  mlpRatio: number;
  drop: number;
  dropPath: number;
  /** The layer-scale init value, or undefined for no layer scale. */
  layerScale: number | undefined;
}

/** Local MHRA (stages 1–2): x + DW3×3(x); x + conv2(DW5×5(conv1(BN(x)))); x + CMlp(BN(x)). */
export class CBlock extends Module {
  gamma_1: Parameter | undefined;
  gamma_2: Parameter | undefined;
  pos_embed: Conv2d;
  norm1: BatchNorm2d;
  conv1: Conv2d;
  conv2: Conv2d;
  /** The "local affinity": a depthwise 5×5 conv. The block's num_heads is unused. */
  attn: Conv2d;
  drop_path: DropPath;
  norm2: BatchNorm2d;
  mlp: UniFormerCMlp;

  constructor(dim: number, o: UniFormerBlockOptions) {
    super();
    const rng = o.rng;
    this.gamma_1 = o.layerScale === undefined ? undefined : new Parameter(filled([1, dim, 1, 1], o.layerScale));
    this.gamma_2 = o.layerScale === undefined ? undefined : new Parameter(filled([1, dim, 1, 1], o.layerScale));
    this.pos_embed = new Conv2d(dim, dim, 3, { rng, padding: 1, groups: dim });
    this.norm1 = new BatchNorm2d(dim);
    this.conv1 = new Conv2d(dim, dim, 1, { rng });
    this.conv2 = new Conv2d(dim, dim, 1, { rng });
    this.attn = new Conv2d(dim, dim, 5, { rng, padding: 2, groups: dim });
    this.drop_path = new DropPath(o.dropPath);
    this.norm2 = new BatchNorm2d(dim);
    this.mlp = new UniFormerCMlp(dim, Math.floor(dim * o.mlpRatio), o.drop, rng);
  }

  /** [B, C, H, W] → same. */
  forward(x: Tensor): Tensor {
    let y = x.add(this.pos_embed.call(x));
    // No activation between conv1, the depthwise conv and conv2.
    y = y.add(this.drop_path.call(scaled(this.gamma_1, this.conv2.call(this.attn.call(this.conv1.call(this.norm1.call(y)))))));
    return y.add(this.drop_path.call(scaled(this.gamma_2, this.mlp.call(this.norm2.call(y)))));
  }
}

/** Multi-head self-attention as the official `Attention`: qkv channels (3, heads, head size), logits (q·kᵀ)·scale. */
export class UniFormerAttention extends Module {
  qkv: Linear;
  attn_drop: Dropout;
  proj: Linear;
  proj_drop: Dropout;
  readonly heads: number;
  readonly scale: number;

  constructor(dim: number, o: { rng: Rng; heads: number; qkvBias: boolean; qkScale: number | null; attnDrop: number; projDrop: number }) {
    super();
    this.heads = o.heads;
    // `qk_scale or head_dim ** -0.5`: a 0 scale also falls back to the default.
    this.scale = o.qkScale || Math.floor(dim / o.heads) ** -0.5;
    this.qkv = new Linear(dim, dim * 3, { rng: o.rng, bias: o.qkvBias, init: 'trunc_normal' });
    this.attn_drop = new Dropout(o.attnDrop);
    this.proj = new Linear(dim, dim, { rng: o.rng, init: 'trunc_normal' });
    this.proj_drop = new Dropout(o.projDrop);
  }

  /** [B, N, C] tokens → the output [B, N, C] and the attention probabilities [B, heads, N, N] (before dropout). */
  attend(x: Tensor): { out: Tensor; attn: Tensor } {
    const [b, n, c] = x.shape as [number, number, number];
    const qkv = this.qkv.call(x).reshape(b, n, 3, this.heads, c / this.heads).permute(2, 0, 3, 1, 4);
    const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
    const attn = q.matmul(k.mT).mul(this.scale).softmax(-1);
    const y = this.attn_drop.call(attn).matmul(v).transpose(1, 2).reshape(b, n, c);
    return { out: this.proj_drop.call(this.proj.call(y)), attn };
  }

  forward(x: Tensor): Tensor {
    return this.attend(x).out;
  }
}

export interface UniFormerAttentionBlockOptions extends UniFormerBlockOptions {
  heads: number;
  qkvBias: boolean;
  qkScale: number | null;
  attnDrop: number;
  normEps: number;
}

/** The parts SABlock and EvoSABlock share: DPE, pre-norm attention and a Linear MLP with LayerNorm. */
export abstract class UniFormerAttentionBlock extends Module {
  gamma_1: Parameter | undefined;
  gamma_2: Parameter | undefined;
  pos_embed: Conv2d;
  norm1: LayerNorm;
  attn: UniFormerAttention;
  drop_path: DropPath;
  norm2: LayerNorm;
  mlp: Mlp;

  constructor(dim: number, o: UniFormerAttentionBlockOptions) {
    super();
    const rng = o.rng;
    this.gamma_1 = o.layerScale === undefined ? undefined : new Parameter(filled([dim], o.layerScale));
    this.gamma_2 = o.layerScale === undefined ? undefined : new Parameter(filled([dim], o.layerScale));
    this.pos_embed = new Conv2d(dim, dim, 3, { rng, padding: 1, groups: dim });
    this.norm1 = new LayerNorm(dim, { eps: o.normEps });
    this.attn = new UniFormerAttention(dim, { rng, heads: o.heads, qkvBias: o.qkvBias, qkScale: o.qkScale, attnDrop: o.attnDrop, projDrop: o.drop });
    this.drop_path = new DropPath(o.dropPath);
    this.norm2 = new LayerNorm(dim, { eps: o.normEps });
    this.mlp = new Mlp(dim, Math.floor(dim * o.mlpRatio), { rng, drop: o.drop, init: 'trunc_normal' });
  }
}

/** Global MHRA (stages 3–4): x + DW3×3(x), then a pre-norm transformer block over all H·W tokens. */
export class SABlock extends UniFormerAttentionBlock {
  /** [B, C, H, W] → same. */
  forward(x: Tensor): Tensor {
    const y = x.add(this.pos_embed.call(x));
    const [b, c, h, w] = y.shape as [number, number, number, number];
    let t = y.flatten(2).transpose(1, 2);
    t = t.add(this.drop_path.call(scaled(this.gamma_1, this.attn.call(this.norm1.call(t)))));
    t = t.add(this.drop_path.call(scaled(this.gamma_2, this.mlp.call(this.norm2.call(t)))));
    return t.transpose(1, 2).reshape(b, c, h, w);
  }
}

/**
 * What UniFormer-Light passes from block to block in stages 3–4 (the
 * official code keeps `score` and the token order in module globals).
 */
export interface TokenState {
  /** The class token [B, 1, C]. */
  cls: Tensor;
  /** The patch map [B, C, H, W], in raster order. */
  x: Tensor;
  /** The running class-attention score of each patch [B, H·W], raster order; undefined before the first block. */
  score: Tensor | undefined;
}

/**
 * Runs `fn` under `module`'s path, recording `path:in.0` / `path:out` as
 * `Module.call` does, for modules that pass more than one tensor.
 */
function callScoped<T>(module: Module, input: Tensor, fn: () => T, output: (result: T) => Tensor): T {
  if (!isTracing() || !module.path) return fn();
  const trace = activeTrace();
  const result = trace.withPath(module.path, fn);
  trace.recordCall(module.path, [input.value], output(result).value);
  return result;
}

/** The patch tokens [B, N, C] reordered by `order` [B, N] (a per-image permutation). */
function takeTokens(tokens: Tensor, order: Tensor): Tensor {
  return tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, tokens.dim(2)));
}

/**
 * Folds a block's class attention into the running patch scores, as the
 * official Attention's side effect does. `attn` is [B, heads, M, M] over
 * [cls; patches…] (M tokens; a pruned block's last token is the merged one).
 */
function updateScore(score: Tensor | undefined, attn: Tensor, tradeOff: number): Tensor {
  const m = attn.dim(-1);
  const clsAttention = (end: number) => attn.select(2, 0).slice(2, 1, end).mean(1);
  if (!score) return clsAttention(m);
  if (score.dim(1) === m - 1) return score.mul(1 - tradeOff).add(clsAttention(m).mul(tradeOff));
  // Pruned block: [cls, kept…, merged]; only the kept tokens' scores move.
  const kept = m - 2;
  const updated = score.slice(1, 0, kept).mul(1 - tradeOff).add(clsAttention(m - 1).mul(tradeOff));
  return concat([updated, score.slice(1, kept)], 1);
}

/**
 * UniFormer-Light's global MHRA with Evo-ViT token pruning (spec §4.2). With
 * prune_ratio r < 1 the patch tokens are sorted by their running score; the
 * top ⌊N·r⌋ are attended together with the class token and one
 * representative token (the score-weighted mean of the others); the others
 * then move by the representative token's attention and MLP updates (the
 * "fast update"), and everything returns to raster order. The last block of
 * stage 3 pools the scores 2×2 for stage 4. Every step is per image.
 */
export class EvoSABlock extends UniFormerAttentionBlock {
  gamma_3: Parameter | undefined;
  readonly pruneRatio: number;
  readonly tradeOff: number;
  readonly downsample: boolean;

  constructor(dim: number, o: UniFormerAttentionBlockOptions & { pruneRatio: number; tradeOff: number; downsample: boolean }) {
    super(dim, o);
    this.gamma_3 = o.layerScale === undefined || o.pruneRatio === 1 ? undefined : new Parameter(filled([dim], o.layerScale));
    this.pruneRatio = o.pruneRatio;
    this.tradeOff = o.tradeOff;
    this.downsample = o.downsample;
  }

  /** Runs the block on the stage's state (recorded as `path:in.0` = patch map in, `path:out` = patch map out). */
  step(state: TokenState): TokenState {
    return callScoped(this, state.x, () => (this.pruneRatio === 1 ? this.full(state) : this.pruned(state)), (s) => s.x);
  }

  /** The block passes the class token and the token scores on, so it runs through `step`. */
  forward(): Tensor {
    throw new ConfigError(`module '${this.path}': an EvoSABlock passes the class token and token scores to the next block; run it with step(state), as UniFormerLight does`);
  }

  /** Attention over [cls; tokens] that also updates the scores. */
  private attention(tokens: Tensor, score: Tensor | undefined): { out: Tensor; score: Tensor } {
    const normed = this.norm1.call(tokens);
    const { out, attn } = callScoped(this.attn, normed, () => this.attn.attend(normed), (r) => r.out);
    return { out, score: updateScore(score, attn, this.tradeOff) };
  }

  /** prune_ratio 1: a plain block over [cls; all patch tokens]. */
  private full({ cls, x, score }: TokenState): TokenState {
    const y = x.add(this.pos_embed.call(x));
    const [b, c, h, w] = y.shape as [number, number, number, number];
    let t = concat([cls, y.flatten(2).transpose(1, 2)], 1);
    const a = this.attention(t, score);
    t = t.add(this.drop_path.call(scaled(this.gamma_1, a.out)));
    t = t.add(this.drop_path.call(scaled(this.gamma_2, this.mlp.call(this.norm2.call(t)))));
    return { cls: t.slice(1, 0, 1), x: t.slice(1, 1).transpose(1, 2).reshape(b, c, h, w), score: a.score };
  }

  private pruned({ cls, x, score }: TokenState): TokenState {
    if (!score) throw new ConfigError(`module '${this.path}': a pruning block needs the token scores of an earlier block`);
    const y = x.add(this.pos_embed.call(x));
    const [b, c, h, w] = y.shape as [number, number, number, number];
    const n = h * w;
    const keep = Math.floor(n * this.pruneRatio);
    const order = score.topk(n, 1, true)[1];
    const sorted = takeTokens(y.flatten(2).transpose(1, 2), order);
    const sortedScore = score.gather(1, order);
    const dropped = sorted.slice(1, keep);
    const droppedScore = sortedScore.slice(1, keep);
    const representative = droppedScore.div(droppedScore.sum(1, true)).unsqueeze(-1).mul(dropped).sum(1, true);

    let t = concat([cls, sorted.slice(1, 0, keep), representative], 1);
    const a = this.attention(t, sortedScore);
    t = t.add(this.drop_path.call(scaled(this.gamma_1, a.out)));
    const m = this.mlp.call(this.norm2.call(t));
    t = t.add(this.drop_path.call(scaled(this.gamma_2, m)));
    // Fast update: the dropped tokens move by the representative token's two updates.
    const fast = a.out.slice(1, -1).add(m.slice(1, -1));
    const movedDropped = dropped.add(scaled(this.gamma_3, fast));

    // Back to raster order: the official argsort of the carried token indices,
    // which at block entry are always the raster order, so they equal `order`.
    const restore = order.cast('float32').topk(n, 1, false)[1];
    const tokens = takeTokens(concat([t.slice(1, 1, keep + 1), movedDropped], 1), restore);
    let newScore = a.score.gather(1, restore);
    if (this.downsample) {
      const pooled = avgPool2d(newScore.reshape(b, 1, h, w), 2, { stride: 2 }).reshape(b, -1);
      newScore = pooled.mul(a.score.sum(1, true).div(pooled.sum(1, true)));
    }
    return { cls: t.slice(1, 0, 1), x: tokens.transpose(1, 2).reshape(b, c, h, w), score: newScore };
  }
}

// ------------------------------------------------------------------- models

/** Per-stage block options shared by both models. */
function stageOptions(c: UniFormerConfig | UniFormerLightConfig, stage: number, eps: number): Omit<UniFormerAttentionBlockOptions, keyof UniFormerBlockOptions> {
  return { heads: Math.floor(c.embed_dim[stage]! / c.head_dim), qkvBias: c.qkv_bias, qkScale: c.qk_scale, attnDrop: c.attn_drop_rate, normEps: eps };
}

/** Drop-path rates of the blocks of each stage (one linear ramp over all blocks). */
function stageDropPaths(c: UniFormerConfig | UniFormerLightConfig): number[][] {
  const dpr = dropPathRates(c.drop_path_rate, c.depth.reduce((a, d) => a + d, 0));
  let at = 0;
  return c.depth.map((d) => dpr.slice(at, (at += d)));
}

/** UniFormer S/S†/B/L, IN-1k and token-labelling (`models/uniformer.py`, `tlt/models/uniformer.py`). */
export class UniFormer extends ClassifierModel {
  patch_embed1: UniFormerPatchEmbed | UniFormerHeadEmbedding;
  patch_embed2: UniFormerPatchEmbed | UniFormerMiddleEmbedding;
  patch_embed3: UniFormerPatchEmbed | UniFormerMiddleEmbedding;
  patch_embed4: UniFormerPatchEmbed | UniFormerMiddleEmbedding;
  pos_drop: Dropout;
  blocks1: CBlock[];
  blocks2: CBlock[];
  blocks3: SABlock[];
  blocks4: SABlock[];
  norm: BatchNorm2d;
  head: Linear | Identity;
  aux_head: Linear | Identity | undefined;
  numClasses: number;
  config: UniFormerConfig;

  constructor(config: UniFormerConfig, rng: Rng) {
    super();
    validateUniFormerConfig(config);
    this.config = config;
    this.numClasses = config.num_classes;
    const dims = config.embed_dim;
    if (config.conv_stem) {
      this.patch_embed1 = new UniFormerHeadEmbedding(config.in_chans, dims[0]!, rng);
      this.patch_embed2 = new UniFormerMiddleEmbedding(dims[0]!, dims[1]!, rng);
      this.patch_embed3 = new UniFormerMiddleEmbedding(dims[1]!, dims[2]!, rng);
      this.patch_embed4 = new UniFormerMiddleEmbedding(dims[2]!, dims[3]!, rng);
    } else {
      this.patch_embed1 = new UniFormerPatchEmbed(4, config.in_chans, dims[0]!, rng);
      this.patch_embed2 = new UniFormerPatchEmbed(2, dims[0]!, dims[1]!, rng);
      this.patch_embed3 = new UniFormerPatchEmbed(2, dims[1]!, dims[2]!, rng);
      this.patch_embed4 = new UniFormerPatchEmbed(2, dims[2]!, dims[3]!, rng);
    }
    this.pos_drop = new Dropout(config.drop_rate);
    const dpr = stageDropPaths(config);
    const eps = normEps(config.norm_layer, 'uniformer');
    const ls = (blockKind: 'cblock' | 'sablock') => (config.layer_scale === 'all' || (config.layer_scale === 'sablocks' && blockKind === 'sablock') ? config.init_value : undefined);
    const base = (dropPath: number, layerScale: number | undefined) => ({ rng, mlpRatio: config.mlp_ratio, drop: config.drop_rate, dropPath, layerScale });
    this.blocks1 = dpr[0]!.map((p) => new CBlock(dims[0]!, base(p, ls('cblock'))));
    this.blocks2 = dpr[1]!.map((p) => new CBlock(dims[1]!, base(p, ls('cblock'))));
    this.blocks3 = dpr[2]!.map((p) => new SABlock(dims[2]!, { ...base(p, ls('sablock')), ...stageOptions(config, 2, eps) }));
    this.blocks4 = dpr[3]!.map((p) => new SABlock(dims[3]!, { ...base(p, ls('sablock')), ...stageOptions(config, 3, eps) }));
    this.norm = new BatchNorm2d(dims[3]!);
    this.head = this.makeHead(config.num_classes, rng);
    this.aux_head = config.return_dense ? this.makeHead(config.num_classes, rng) : undefined;
  }

  private makeHead(numClasses: number, rng: Rng): Linear | Identity {
    return numClasses > 0 ? new Linear(this.config.embed_dim[3]!, numClasses, { rng, init: 'trunc_normal' }) : new Identity();
  }

  /** The stage-4 map after the final BatchNorm: [B, C4, H/32, W/32]. */
  forwardFeatures(x: Tensor): Tensor {
    let y = this.pos_drop.call(this.patch_embed1.call(x));
    y = this.blocks1.reduce((h, blk) => blk.call(h), y);
    y = this.blocks2.reduce((h, blk) => blk.call(h), this.patch_embed2.call(y));
    y = this.blocks3.reduce((h, blk) => blk.call(h), this.patch_embed3.call(y));
    y = this.blocks4.reduce((h, blk) => blk.call(h), this.patch_embed4.call(y));
    return this.norm.call(y);
  }

  /**
   * Spatial mean, then `head`. A token-labelling model adds 0.5 · the
   * per-class maximum of `aux_head` over the tokens: the official eval
   * output, used here in train mode too (for the official train-mode pair
   * see `forwardDense`).
   */
  forwardHead(x: Tensor, preLogits = false): Tensor {
    const pooled = x.flatten(2).mean(-1);
    if (preLogits) return pooled;
    const logits = this.head.call(pooled);
    if (!this.aux_head || this.numClasses === 0) return logits;
    return logits.add(this.aux_head.call(x.flatten(2).transpose(1, 2)).amax(1).mul(0.5));
  }

  /**
   * The token-labelling training outputs (official train mode, without the
   * MixToken augmentation): class logits [B, K] and per-token logits [B, H·W, K].
   */
  forwardDense(x: Tensor): [Tensor, Tensor] {
    if (!this.aux_head || this.numClasses === 0) throw new ConfigError('uniformer: forwardDense needs a token-labelling model (return_dense: true) with a classifier');
    const features = this.forwardFeatures(x);
    return [this.head.call(features.flatten(2).mean(-1)), this.aux_head.call(features.flatten(2).transpose(1, 2))];
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.head = this.makeHead(numClasses, rng);
    if (this.aux_head) this.aux_head = this.makeHead(numClasses, rng);
    this.numClasses = numClasses;
    this.config = { ...this.config, num_classes: numClasses };
    this.nameParameters();
  }
}

/** UniFormer-Light XXS/XS (`models/uniformer_light.py`). */
export class UniFormerLight extends ClassifierModel {
  cls_token: Parameter;
  patch_embed1: UniFormerPatchEmbed | UniFormerHeadEmbedding;
  patch_embed2: UniFormerPatchEmbed;
  patch_embed3: UniFormerPatchEmbed;
  patch_embed4: UniFormerPatchEmbed;
  cls_upsample: Linear;
  pos_drop: Dropout;
  blocks1: CBlock[];
  blocks2: CBlock[];
  blocks3: EvoSABlock[];
  blocks4: EvoSABlock[];
  norm: BatchNorm2d;
  /** Training only: the class-token branch of the official loss 0.5·CE(head) + 0.5·CE(head_cls). */
  norm_cls: LayerNorm;
  head: Linear | Identity;
  /** Training only (see norm_cls). */
  head_cls: Linear | Identity;
  numClasses: number;
  config: UniFormerLightConfig;

  constructor(config: UniFormerLightConfig, rng: Rng) {
    super();
    validateLightConfig(config);
    this.config = config;
    this.numClasses = config.num_classes;
    const dims = config.embed_dim;
    this.cls_token = new Parameter(filled([1, 1, dims[2]!], 0));
    this.patch_embed1 = config.conv_stem ? new UniFormerHeadEmbedding(config.in_chans, dims[0]!, rng) : new UniFormerPatchEmbed(4, config.in_chans, dims[0]!, rng);
    this.patch_embed2 = new UniFormerPatchEmbed(2, dims[0]!, dims[1]!, rng);
    this.patch_embed3 = new UniFormerPatchEmbed(2, dims[1]!, dims[2]!, rng);
    this.patch_embed4 = new UniFormerPatchEmbed(2, dims[2]!, dims[3]!, rng);
    this.cls_upsample = new Linear(dims[2]!, dims[3]!, { rng, init: 'trunc_normal' });
    this.pos_drop = new Dropout(config.drop_rate);
    const dpr = stageDropPaths(config);
    const eps = normEps(config.norm_layer, 'uniformer_light');
    const layerScale = config.layer_scale ? config.init_value : undefined;
    const base = (stage: number, dropPath: number) => ({ rng, mlpRatio: config.mlp_ratio[stage]!, drop: config.drop_rate, dropPath, layerScale });
    const evo = (stage: number) => (p: number, i: number) =>
      new EvoSABlock(dims[stage]!, {
        ...base(stage, p),
        ...stageOptions(config, stage, eps),
        pruneRatio: config.prune_ratio[stage]![i]!,
        tradeOff: config.trade_off[stage]![i]!,
        downsample: stage === 2 && i === config.depth[2]! - 1,
      });
    this.blocks1 = dpr[0]!.map((p) => new CBlock(dims[0]!, base(0, p)));
    this.blocks2 = dpr[1]!.map((p) => new CBlock(dims[1]!, base(1, p)));
    this.blocks3 = dpr[2]!.map(evo(2));
    this.blocks4 = dpr[3]!.map(evo(3));
    this.norm = new BatchNorm2d(dims[3]!);
    this.norm_cls = new LayerNorm(dims[3]!);
    this.head = this.makeHead(config.num_classes, rng);
    this.head_cls = this.makeHead(config.num_classes, rng);
  }

  private makeHead(numClasses: number, rng: Rng): Linear | Identity {
    return numClasses > 0 ? new Linear(this.config.embed_dim[3]!, numClasses, { rng, init: 'trunc_normal' }) : new Identity();
  }

  /** The class token [B, 1, C4] and the normalised stage-4 map [B, C4, H/32, W/32]. */
  private features(x: Tensor): TokenState {
    let y = this.pos_drop.call(this.patch_embed1.call(x));
    y = this.blocks1.reduce((h, blk) => blk.call(h), y);
    y = this.blocks2.reduce((h, blk) => blk.call(h), this.patch_embed2.call(y));
    y = this.patch_embed3.call(y);
    let state: TokenState = { cls: this.cls_token.expand(y.dim(0), -1, -1), x: y, score: undefined };
    state = this.blocks3.reduce((s, blk) => blk.step(s), state);
    // Stage 4 keeps the scores pooled by the last stage-3 block.
    state = { cls: this.cls_upsample.call(state.cls), x: this.patch_embed4.call(state.x), score: state.score };
    state = this.blocks4.reduce((s, blk) => blk.step(s), state);
    return { ...state, x: this.norm.call(state.x) };
  }

  /** The stage-4 map after the final BatchNorm (the class token is discarded, as at evaluation). */
  forwardFeatures(x: Tensor): Tensor {
    return this.features(x).x;
  }

  forwardHead(x: Tensor, preLogits = false): Tensor {
    const pooled = x.flatten(2).mean(-1);
    return preLogits ? pooled : this.head.call(pooled);
  }

  /** The official train-mode pair: head logits and the class-token logits head_cls(norm_cls(cls)). */
  forwardWithClassToken(x: Tensor): [Tensor, Tensor] {
    const { cls, x: features } = this.features(x);
    return [this.forwardHead(features), this.head_cls.call(this.norm_cls.call(cls).squeeze(1))];
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.head = this.makeHead(numClasses, rng);
    this.head_cls = this.makeHead(numClasses, rng);
    this.numClasses = numClasses;
    this.config = { ...this.config, num_classes: numClasses };
    this.nameParameters();
  }
}

// ------------------------------------------------------- checkpoint filter

/** PaddleClas' names for the modules it renamed (`ppcls/arch/backbone/model_zoo/uniformer.py`). */
const PADDLE_RENAMES: readonly [RegExp, string][] = [
  [/\.mlp\.fc1_conv\./, '.mlp.fc1.'],
  [/\.mlp\.fc2_conv\./, '.mlp.fc2.'],
  [/^(patch_embed\d)\.proj_conv\./, '$1.proj.'],
];

/**
 * Brings an official or PaddleClas UniFormer checkpoint (unwrapped from the
 * Drive/Baidu `{'model': ...}` training checkpoint by the loader; `--key
 * model_ema` picks the EMA weights) into this library's key space: for PaddleClas
 * `.pdparams` (recognised by BatchNorm `_mean` keys) renames `fc1_conv`,
 * `fc2_conv`, `proj_conv`, BN `_mean`/`_variance`, and transposes the Linear
 * weights; adds any `num_batches_tracked` the file lacks. It cannot tell
 * head_dim 32 from 64: pick the variant as the file comment says.
 */
export function uniformerCheckpointFilter(weights: ReadonlyMap<string, NDArray>, model: UniFormer | UniFormerLight): Map<string, NDArray> {
  let sd = new Map(weights);
  if ([...sd.keys()].some((k) => k.endsWith('._mean'))) {
    const renamed = new Map([...sd].map(([k, v]) => [PADDLE_RENAMES.reduce((key, [from, to]) => key.replace(from, to), k), v] as const));
    sd = convertPaddleStateDict(renamed);
  }
  for (const [key] of model.namedBuffers()) {
    if (key.endsWith('.num_batches_tracked') && !sd.has(key)) sd.set(key, NDArray.int64([], [0]));
  }
  return sd;
}

// ------------------------------------------------------ pretrained configs

const drive = (id: string) => `https://drive.google.com/file/d/${id}/view`;
const PADDLE_URL = 'https://paddle-imagenet-models-name.bj.bcebos.com/dygraph';
const WRAPPER_NOTE = "a {'model', 'model_ema', ...} training checkpoint (Google Drive; Baidu Cloud mirror)";

/** IN-1k models: DeiT eval transform (resize int(256/224·S), bicubic, ImageNet mean/std). */
function in1kPretrained(driveId: string, top1: number, paddle?: { name: string; top1: number }): PretrainedConfig {
  // The Hugging Face model card: only the models without token labelling and layer scale are there.
  const hub = paddle && !paddle.name.endsWith('_ls') ? '; also on Hugging Face Sense-X/uniformer_image' : '';
  const paddleNote = paddle ? `; PaddleClas copy ${PADDLE_URL}/UniFormer_${paddle.name}_pretrained.pdparams (top-1 ${paddle.top1})` : '';
  return imagenetPretrained({ paperTop1: top1, weights: { url: drive(driveId), format: 'pth', top1, notes: `${WRAPPER_NOTE}${hub}${paddleNote}` } });
}

/**
 * Token-labelling models: the TL scripts take crop 0.9, bicubic and mean/std
 * from timm's `vision_transformer._cfg()`, which with the pinned timm 0.4.12
 * is mean = std = 0.5 (spec §3: not yet checked against the published top-1;
 * older timm gives the ImageNet mean/std).
 */
function tlPretrained(size: number, driveId: string, top1: number): PretrainedConfig {
  return imagenetPretrained({
    inputSize: [3, size, size],
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    cropPct: 0.9,
    paperTop1: top1,
    weights: { url: drive(driveId), format: 'pth', top1, notes: `${WRAPPER_NOTE}; mean/std 0.5 assumes timm 0.4.12 (ImageNet mean/std with timm ≤ 0.4.9)` },
  });
}

/** Light models: DeiT eval transform at their training resolution. */
function lightPretrained(size: number, driveId: string, top1: number): PretrainedConfig {
  return imagenetPretrained({ inputSize: [3, size, size], paperTop1: top1, weights: { url: drive(driveId), format: 'pth', top1, notes: WRAPPER_NOTE } });
}

// -------------------------------------------------------------- registry

/** The official `UniFormer()` defaults (UniFormer-S's shape, head_dim 64, patch stem). */
const UNIFORMER_DEFAULTS: UniFormerConfig = {
  depth: [3, 4, 8, 3],
  img_size: 224,
  in_chans: 3,
  num_classes: 1000,
  embed_dim: [64, 128, 320, 512],
  head_dim: 64,
  mlp_ratio: 4,
  qkv_bias: true,
  qk_scale: null,
  drop_rate: 0,
  attn_drop_rate: 0,
  drop_path_rate: 0,
  norm_layer: { $partial: 'torch.nn.LayerNorm', kwargs: { eps: 1e-6 } },
  conv_stem: false,
  layer_scale: 'none',
  init_value: 1e-6,
  return_dense: false,
};

/** The official `UniFormer_Light()` defaults. */
const UNIFORMER_LIGHT_DEFAULTS: UniFormerLightConfig = {
  depth: [3, 4, 8, 3],
  in_chans: 3,
  num_classes: 1000,
  embed_dim: [64, 128, 320, 512],
  head_dim: 64,
  mlp_ratio: [4, 4, 4, 4],
  qkv_bias: true,
  qk_scale: null,
  drop_rate: 0,
  attn_drop_rate: 0,
  drop_path_rate: 0,
  norm_layer: { $partial: 'torch.nn.LayerNorm', kwargs: { eps: 1e-6 } },
  conv_stem: false,
  prune_ratio: [[], [], [1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5]],
  trade_off: [[], [], [1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5]],
  layer_scale: false,
  init_value: 1e-6,
};

registerFamily<UniFormerConfig>({
  name: 'uniformer',
  description: 'UniFormer (Li et al., TPAMI 2023 / ICLR 2022, "UniFormer: Unifying Convolution and Self-attention for Visual Recognition"); official code Sense-X/UniFormer, image_classification/models/uniformer.py and token_labeling/tlt/models/uniformer.py',
  defaults: UNIFORMER_DEFAULTS,
  build: (config, rng) => new UniFormer(config, rng),
  filterCheckpoint: (sd, model) => uniformerCheckpointFilter(sd, model as UniFormer),
});

registerFamily<UniFormerLightConfig>({
  name: 'uniformer_light',
  description: 'UniFormer-Light (XXS, XS) with Evo-ViT token pruning; official code Sense-X/UniFormer, image_classification/models/uniformer_light.py',
  defaults: UNIFORMER_LIGHT_DEFAULTS,
  build: (config, rng) => new UniFormerLight(config, rng),
  filterCheckpoint: (sd, model) => uniformerCheckpointFilter(sd, model as UniFormerLight),
});

const SMALL = { depth: [3, 4, 8, 3], embed_dim: [64, 128, 320, 512] } as const;
const SMALL_PLUS = { depth: [3, 5, 9, 3], embed_dim: [64, 128, 320, 512], conv_stem: true } as const;
const BASE = { depth: [5, 8, 20, 7], embed_dim: [64, 128, 320, 512] } as const;
const LARGE_LS = { depth: [5, 10, 24, 7], embed_dim: [128, 192, 448, 640], head_dim: 64, layer_scale: 'all', return_dense: true } as const;

const UNIFORMER_VARIANTS: readonly { name: string; config: Partial<UniFormerConfig>; pretrained: PretrainedConfig; description: string }[] = [
  // models/uniformer.py, ImageNet-1k (README "ImageNet-1K pretrained").
  { name: 'uniformer_small', config: { ...SMALL, head_dim: 64 }, pretrained: in1kPretrained('1-uepH3Q3BhTmWU6HK-sGAGQC_MpfIiPD', 82.9, { name: 'small', top1: 82.94 }), description: 'UniFormer-S, official uniformer_small()' },
  { name: 'uniformer_small_plus', config: { ...SMALL_PLUS, head_dim: 32 }, pretrained: in1kPretrained('10IN5ULcjz0Ld_lDokkTGOSmRFXLzUkEs', 83.4, { name: 'small_plus', top1: 83.29 }), description: 'UniFormer-S† (conv stem, head_dim 32), official uniformer_small_plus()' },
  { name: 'uniformer_small_plus_dim64', config: { ...SMALL_PLUS, head_dim: 64 }, pretrained: in1kPretrained('178ipRvMBKeAP_Fzy6fEr2HQkIQWdgEY6', 83.4, { name: 'small_plus_dim64', top1: 83.25 }), description: 'UniFormer-S† retrained with head_dim 64, official uniformer_small_plus_dim64()' },
  { name: 'uniformer_base', config: { ...BASE, head_dim: 64 }, pretrained: in1kPretrained('1-wT39QazTGELxgrQIu6J12D3qcla3hui', 83.8, { name: 'base', top1: 83.76 }), description: 'UniFormer-B, official uniformer_base()' },
  { name: 'uniformer_base_ls', config: { ...BASE, head_dim: 64, layer_scale: 'sablocks' }, pretrained: in1kPretrained('10FnwzMVgGL8bPO3EMZ7oG4vDvqnPoBK5', 83.9, { name: 'base_ls', top1: 83.98 }), description: 'UniFormer-B + layer scale (SABlocks), official uniformer_base_ls()' },
  // token_labeling/tlt/models/uniformer.py: same factory names, head_dim 32 unless _dim64.
  { name: 'uniformer_small_tl', config: { ...SMALL, head_dim: 32, return_dense: true }, pretrained: tlPretrained(224, '16wjfeyqQFZ2x9W91EXf0Py1bfv4Fydfr', 83.4), description: 'UniFormer-S with token labelling (head_dim 32), TL uniformer_small()' },
  { name: 'uniformer_small_dim64_tl', config: { ...SMALL, head_dim: 64, return_dense: true }, pretrained: tlPretrained(224, '17NC5qqAWCT2gI_jY_cJnFTOqRQTSwsoz', 83.4), description: 'UniFormer-S with token labelling, head_dim 64, TL uniformer_small_dim64()' },
  { name: 'uniformer_small_plus_tl', config: { ...SMALL_PLUS, head_dim: 32, return_dense: true }, pretrained: tlPretrained(224, '16rgtEVEeX3jVTQaiLsojBQP5sRaj_2aZ', 83.9), description: 'UniFormer-S† with token labelling (head_dim 32), TL uniformer_small_plus()' },
  { name: 'uniformer_small_plus_dim64_tl', config: { ...SMALL_PLUS, head_dim: 64, return_dense: true }, pretrained: tlPretrained(224, '17OfoDWt2_nA0BYN0OuLPpG8mHJDTluQQ', 83.6), description: 'UniFormer-S† with token labelling, head_dim 64, TL uniformer_small_plus_dim64()' },
  { name: 'uniformer_base_tl', config: { ...BASE, head_dim: 32, return_dense: true }, pretrained: tlPretrained(224, '16nsTjawiYZuoCHBRarr58zA7vCFcmQmL', 85.1), description: 'UniFormer-B with token labelling (head_dim 32), TL uniformer_base()' },
  { name: 'uniformer_base_dim64_tl', config: { ...BASE, head_dim: 64, return_dense: true }, pretrained: tlPretrained(224, '17MneG9CnZG6zBvXYUr4WUXoTYc4rjJj5', 84.8), description: 'UniFormer-B with token labelling, head_dim 64, TL uniformer_base_dim64()' },
  { name: 'uniformer_large_ls', config: { ...LARGE_LS }, pretrained: tlPretrained(224, '173e2qaJhOwbuC_DbNQSH47Oo_04mSfDj', 85.6), description: 'UniFormer-L + layer scale (every block), token labelling; TL uniformer_large_ls() (only in the TL package, issue #127)' },
  // 384 fine-tunes of the TL models (head_dim 32 for S/S†/B, issue #128).
  { name: 'uniformer_small_tl_384', config: { ...SMALL, head_dim: 32, return_dense: true, img_size: 384 }, pretrained: tlPretrained(384, '16p4CXzuXC5J4_SJK67dsvnc8gTKmtKN1', 84.6), description: 'UniFormer-S, token labelling, fine-tuned at 384' },
  { name: 'uniformer_small_plus_tl_384', config: { ...SMALL_PLUS, head_dim: 32, return_dense: true, img_size: 384 }, pretrained: tlPretrained(384, '16wJT87vTc43Dt1q2sXrxZRUuEdrNdFdk', 84.9), description: 'UniFormer-S†, token labelling, fine-tuned at 384' },
  { name: 'uniformer_base_tl_384', config: { ...BASE, head_dim: 32, return_dense: true, img_size: 384 }, pretrained: tlPretrained(384, '16kZlIarIwf9ldkCdHVKTQfFmDgfkucQ7', 86.0), description: 'UniFormer-B, token labelling, fine-tuned at 384' },
  { name: 'uniformer_large_ls_384', config: { ...LARGE_LS, img_size: 384 }, pretrained: tlPretrained(384, '174rcA6rNzYVG9Ya9ik-NwTGoxW1M79ez', 86.3), description: 'UniFormer-L + layer scale, token labelling, fine-tuned at 384' },
];

const XXS: Partial<UniFormerLightConfig> = {
  depth: [2, 5, 8, 2],
  conv_stem: true,
  prune_ratio: [[], [], [1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5]],
  trade_off: [[], [], [1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5]],
  embed_dim: [56, 112, 224, 448],
  head_dim: 28,
  mlp_ratio: [3, 3, 3, 3],
};
const XS: Partial<UniFormerLightConfig> = {
  depth: [3, 5, 9, 3],
  conv_stem: true,
  prune_ratio: [[], [], [1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5]],
  trade_off: [[], [], [1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5]],
  embed_dim: [64, 128, 256, 512],
  head_dim: 32,
  mlp_ratio: [3, 3, 3, 3],
};

/** Each Light resolution is its own checkpoint (README "Lightweight models"). */
const LIGHT_VARIANTS: readonly { name: string; config: Partial<UniFormerLightConfig>; pretrained: PretrainedConfig; description: string }[] = [
  { name: 'uniformer_xxs', config: XXS, pretrained: lightPretrained(224, '1Cw9r_3c30N-esFI8RFYa6rQXJrr1rAHY', 80.6), description: 'UniFormer-XXS at 224, official uniformer_xxs()' },
  { name: 'uniformer_xxs_128', config: XXS, pretrained: lightPretrained(128, '1Cr7uB5hUck1BHioEROWZjfLpYRwg4Zps', 76.8), description: 'UniFormer-XXS trained at 128' },
  { name: 'uniformer_xxs_160', config: XXS, pretrained: lightPretrained(160, '1CsXCzfVFPyM2mY8BA_1fO3q_VBngnF44', 79.1), description: 'UniFormer-XXS trained at 160' },
  { name: 'uniformer_xxs_192', config: XXS, pretrained: lightPretrained(192, '1CjrCEnZCk2aLrN7nVG8vFvu3FAUL4_Y_', 79.9), description: 'UniFormer-XXS trained at 192' },
  { name: 'uniformer_xs', config: XS, pretrained: lightPretrained(224, '1CwQ91fjuAu3Rhn3zV4vjAmQ8v36AfYPT', 82.0), description: 'UniFormer-XS at 224, official uniformer_xs()' },
  { name: 'uniformer_xs_192', config: XS, pretrained: lightPretrained(192, '1Ce2Dk9-k_-sHt5dXp-gfNOEK37Jdcffv', 81.5), description: 'UniFormer-XS trained at 192' },
];

for (const v of UNIFORMER_VARIANTS) registerVariant({ ...v, family: 'uniformer' });
for (const v of LIGHT_VARIANTS) registerVariant({ ...v, family: 'uniformer_light' });
