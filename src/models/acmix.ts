/**
 * ACmix — Pan et al., "On the Integration of Self-Attention and Convolution",
 * CVPR 2022 (arXiv 2111.14556). Official code: `LeapLabTHU/ACmix`
 * (`ResNet/test_bottleneck.py`, `ResNet/ResNet_ImageNet.py`,
 * `Swin-Transformer/models/swin_transformer_acmix.py`); not in timm.
 *
 * One set of 1×1 projections (q, k, v) feeds two paths whose outputs are
 * mixed by two learned scalars:
 *
 *     out = rate1 · AttentionPath(q, k, v) + rate2 · ConvPath(q, k, v)
 *
 * The conv path mixes the 3·heads maps of every head slot into k² maps with
 * a "fully connected" 1×1 layer (`fc`), then applies a grouped k×k conv
 * (`dep_conv`, initialised as the k² one-hot shifts, then learned). The two
 * hosts of the paper are here:
 * - ACmix-ResNet-26/38/50: the attention path is a SAN-style 7×7 sliding-window
 *   attention with a learned positional encoding. No weights were released.
 * - ACmix-Swin-T/S: the attention path is Swin's (shifted) window attention.
 *   Weights were released for these two only.
 *
 * Layout: the operator → ACmix-ResNet (block, model) → ACmix-Swin (attention,
 * block, stages, model) → checkpoint filters → pretrained configs →
 * registered variants.
 */
import { ConfigError, ShapeError, fmtShape } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { filled, normal, truncNormal } from '../nn/init.js';
import { BatchNorm2d, Conv2d, Dropout, DropPath, Identity, LayerNorm, Linear, MaxPool2d, Mlp, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import { Parameter, type Tensor, concat, constant } from '../tensor/tensor.js';
import { ClassifierModel, type PretrainedConfig, imagenetPretrained, registerFamily, registerVariant } from './registry.js';

// ------------------------------------------------------------ the operator

/** `nn.Softmax(dim)`: a module only so that its output is recorded under the official path (`softmax:out`). */
class Softmax extends Module {
  constructor(readonly dim: number) {
    super();
  }

  forward(x: Tensor): Tensor {
    return x.softmax(this.dim);
  }
}

/** torch.linspace(-1, 1, n) in float32 by PyTorch's scalar CPU formula (the second half counts back from the end); its vectorised kernel can differ in the last bit. */
function linspace11(n: number): number[] {
  if (n === 1) return [-1];
  const step = Math.fround(2 / (n - 1));
  const half = Math.floor(n / 2);
  return Array.from({ length: n }, (_, i) => (i < half ? Math.fround(-1 + Math.fround(step * i)) : Math.fround(1 - Math.fround(step * (n - 1 - i)))));
}

/**
 * The official `position(H, W)` grid, [1, 2, H, W]: channel 0 is x (linspace(−1, 1, W)
 * along the width), channel 1 is y (along the height). It depends on the
 * resolution, so it is rebuilt for every input size.
 */
function positionGrid(h: number, w: number): NDArray<'float32'> {
  const xs = linspace11(w);
  const ys = linspace11(h);
  const grid = NDArray.float32([1, 2, h, w]);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      grid.data[i * w + j] = xs[j]!;
      grid.data[h * w + i * w + j] = ys[i]!;
    }
  }
  return grid;
}

export interface LocalAttentionOptions {
  /** Window size k (odd); the maps are reflection-padded by (k − 1)/2. */
  kernel: number;
  /** Output stride; `q` must already be subsampled (q[:, :, ::s, ::s]). */
  stride: number;
  /**
   * Softmax over the last axis of the logits [N, Ho, Wo, k²] (neighbour n = k·u + v);
   * ACmix passes its recorded `softmax` module. Default: `logits.softmax(-1)`.
   */
  softmax?: (logits: Tensor) => Tensor;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * SAN-style k×k sliding-window attention without materialising the
 * neighbourhoods. The official code unfolds the reflection-padded keys and
 * values into [N, d, k², Ho, Wo] (k² = 49 copies of the maps). Here, for each
 * of the k row offsets u, the queries of output row i meet the whole padded
 * key row s·i + u in one batched matrix product,
 *
 *     M_u[i, j, c] = Σ_d q[d, i, j] · K_pad[d, s·i + u, c]      c < Wp = W + 2p
 *
 * and the k logits of query (i, j) lie on the band c = s·j + v, at flat
 * position j·(Wp + s) + v of the row [j, c]. So when the product has enough
 * (zero) query rows that its flat length is a multiple of Wp + s, a reshape to
 * rows of Wp + s puts query j's logits in row j, columns 0..k−1 (the "skew"
 * trick; Wp/g rows of Wp + s with g = gcd(Wp, s)). The values side runs the
 * same steps backwards: the weights, zero-padded to [Wp/g, Wp + s] and
 * reshaped to rows of Wp, form the band matrix, which multiplies the padded
 * value rows:
 *
 *     out[:, i, j] = Σ_u Σ_c A_u[i, j, c] · V_pad[:, s·i + u, c].
 *
 * Besides the k² logits per query (which the official code holds too), the
 * largest intermediate is one M_u, about Wp/(d·k²) of an unfolded copy; the
 * result equals the unfold formulation up to summation order (the band's
 * zeros add exact zeros). The batched products run at matrix-multiply speed,
 * where 49 shifted elementwise multiply-and-sums would be memory-bound.
 *
 * @param q      [N, d, Ho, Wo], already scaled and subsampled
 * @param keys   [N, d, H, W] (ACmix passes k − pe, see `ACmix.forward`)
 * @param values [N, d, H, W]
 * @returns      [N, d, Ho, Wo]
 */
export function acmixLocalAttention(q: Tensor, keys: Tensor, values: Tensor, opts: LocalAttentionOptions): Tensor {
  const { kernel: k, stride: s } = opts;
  const p = (k - 1) / 2;
  const [n, , ho, wo] = q.shape as [number, number, number, number];
  const wp = keys.dim(3) + 2 * p;
  const g = gcd(wp, s);
  // Rows of the skewed layout: the product has (Wp + s)/g query rows (Wo real, the rest zero).
  const [productRows, skewRows] = [(wp + s) / g, wp / g];
  // Channels last, so the products contract d, the innermost axis.
  const qRows = q.permute(0, 2, 3, 1).pad([0, 0, 0, productRows - wo]); // [N, Ho, (Wp + s)/g, d]
  const keysPad = keys.pad([p, p, p, p], 'reflect').permute(0, 2, 3, 1); // [N, H + 2p, Wp, d]
  const valuesPad = values.pad([p, p, p, p], 'reflect').permute(0, 2, 3, 1);
  const rows = (x: Tensor, u: number) => x.slice(1, u, u + s * (ho - 1) + 1, s); // rows s·i + u: [N, Ho, Wp, d]

  const logits: Tensor[] = [];
  for (let u = 0; u < k; u++) {
    const m = qRows.matmul(rows(keysPad, u).mT); // [N, Ho, (Wp + s)/g, Wp]
    logits.push(m.reshape(n, ho, skewRows, wp + s).slice(3, 0, k).slice(2, 0, wo));
  }
  const stacked = concat(logits, 3); // [N, Ho, Wo, k²], neighbour k·u + v
  const weights = opts.softmax ? opts.softmax(stacked) : stacked.softmax(-1);

  let out: Tensor | undefined;
  for (let u = 0; u < k; u++) {
    const band = weights.slice(3, u * k, (u + 1) * k).pad([0, wp + s - k, 0, skewRows - wo]).reshape(n, ho, productRows, wp);
    const term = band.matmul(rows(valuesPad, u)); // [N, Ho, (Wp + s)/g, d]
    out = out ? out.add(term) : term;
  }
  return out!.slice(2, 0, wo).permute(0, 3, 1, 2);
}

/** ACmix's constructor options (official names; the defaults are the paper's). */
export interface ACmixOptions {
  rng: Rng;
  /** Attention window (7). */
  kernel_att?: number;
  head?: number;
  /** Grouped-conv kernel of the conv path (3). */
  kernel_conv?: number;
  stride?: number;
  /** Only 1: the official code pads the attention for a dilation but never dilates its Unfold, so it fails for any other value. */
  dilation?: number;
}

/** `dep_conv`'s shift initialisation: output channel o, input-in-group t is one-hot at (t // k, t % k). */
function shiftKernels(outChannels: number, k: number): NDArray<'float32'> {
  const w = NDArray.float32([outChannels, k * k, k, k]);
  for (let o = 0; o < outChannels; o++) for (let t = 0; t < k * k; t++) w.data[((o * k * k + t) * k + Math.floor(t / k)) * k + (t % k)] = 1;
  return w;
}

/**
 * The ACmix operator of the official ResNet (`ResNet/test_bottleneck.py`):
 * q, k, v = conv1/conv2/conv3 (1×1, with bias) of the input, then
 * - attention: per head (channel h·hd + d), 7×7 sliding-window attention over
 *   the reflection-padded k and v, logits q·(k_n + pe_q − pe_n)·hd^−½ where
 *   pe = conv_p(position grid) (stride 2: q and pe_q at even positions);
 * - conv: `fc` (1×1, no bias) maps the 3·head maps of every slot d to k² maps laid
 *   out as channel d·k² + t, then `dep_conv` (k×k, groups hd, no bias, stride s)
 *   writes output channel d·head + h' — added to attention channel h·hd + d
 *   without re-permutation, as in the official code;
 * - out = rate1 · attention + rate2 · conv.
 *
 * It is a drop-in replacement for a 3×3 convolution with padding 1 (same
 * output size, stride 1 or 2), as ACmix-ResNet uses it:
 *
 * @example
 * // before: new Conv2d(64, 128, 3, { stride: 2, padding: 1, bias: false, rng })
 * const mix = new ACmix(64, 128, { stride: 2, rng }); // [B, 64, H, W] → [B, 128, H/2, W/2]
 *
 * The feature map must be larger than 3 on each side (reflection padding) and,
 * with stride 2, have even sides (the official `view(h // stride)` needs it).
 * No trained weights of this operator were ever published.
 */
export class ACmix extends Module {
  rate1: Parameter;
  rate2: Parameter;
  /** q projection. */
  conv1: Conv2d;
  /** k projection (in ACmix-ResNet its key is `layerX.Y.conv2.conv2`). */
  conv2: Conv2d;
  /** v projection. */
  conv3: Conv2d;
  /** Positional encoding: 1×1 conv of the 2-channel position grid to head_dim channels. */
  conv_p: Conv2d;
  /** Softmax over the 49 neighbours; its recorded output is [B·head, Ho, Wo, 49], the official `softmax:out` [B·head, 49, Ho, Wo] permuted by (0, 2, 3, 1). */
  softmax = new Softmax(-1);
  /** The "fully connected" layer: 3·head → k_conv² maps, no bias (the Swin version has one). */
  fc: Conv2d;
  /** Grouped conv (groups = head_dim) without bias: the official reset "zeroes" the bias by assigning None. */
  dep_conv: Conv2d;
  readonly head: number;
  readonly headDim: number;
  readonly kernelAtt: number;
  readonly stride: number;

  constructor(
    readonly inPlanes: number,
    readonly outPlanes: number,
    opts: ACmixOptions,
  ) {
    super();
    const { rng } = opts;
    this.head = opts.head ?? 4;
    this.kernelAtt = opts.kernel_att ?? 7;
    this.stride = opts.stride ?? 1;
    const kConv = opts.kernel_conv ?? 3;
    if (outPlanes % this.head !== 0) throw new ConfigError(`ACmix: out_planes ${outPlanes} is not divisible by head ${this.head}`);
    if (this.kernelAtt % 2 !== 1) throw new ConfigError(`ACmix: kernel_att must be odd (the output keeps the input size), got ${this.kernelAtt}`);
    if (kConv !== 3) throw new ConfigError(`ACmix: kernel_conv must be 3: the official dep_conv pads by 1 whatever its kernel, so any other size changes the output size (got ${kConv})`);
    if ((opts.dilation ?? 1) !== 1) throw new ConfigError(`ACmix: dilation must be 1: the official code pads the attention for a dilation but its Unfold never dilates, so the output size breaks (got ${opts.dilation})`);
    if (this.stride !== 1 && this.stride !== 2) throw new ConfigError(`ACmix: stride must be 1 or 2, got ${this.stride}`);
    this.headDim = outPlanes / this.head;
    // The official reset_parameters fills the rates with 0.5.
    this.rate1 = new Parameter(filled([1], 0.5));
    this.rate2 = new Parameter(filled([1], 0.5));
    this.conv1 = new Conv2d(inPlanes, outPlanes, 1, { rng });
    this.conv2 = new Conv2d(inPlanes, outPlanes, 1, { rng });
    this.conv3 = new Conv2d(inPlanes, outPlanes, 1, { rng });
    this.conv_p = new Conv2d(2, this.headDim, 1, { rng });
    this.fc = new Conv2d(3 * this.head, kConv * kConv, 1, { rng, bias: false });
    this.dep_conv = new Conv2d(kConv * kConv * this.headDim, outPlanes, kConv, { rng, bias: false, groups: this.headDim, padding: 1, stride: this.stride });
    this.dep_conv.weight.data = shiftKernels(outPlanes, kConv);
  }

  forward(x: Tensor): Tensor {
    const [b, , h, w] = x.shape as [number, number, number, number];
    const { head, headDim: hd, stride: s } = this;
    const pad = (this.kernelAtt - 1) / 2;
    const where = this.path || 'ACmix';
    if (h <= pad || w <= pad) {
      throw new ShapeError(`${where}: the ${h}×${w} map is too small for the ${this.kernelAtt}×${this.kernelAtt} reflection-padded attention (both sides must exceed ${pad}); use a larger input image`);
    }
    if (h % s !== 0 || w % s !== 0) throw new ShapeError(`${where}: stride ${s} needs even map sides, got ${h}×${w} (the official view(h // stride) fails too); use an input size whose feature maps stay even`);
    const [ho, wo] = [h / s, w / s];
    const q = this.conv1.call(x);
    const k = this.conv2.call(x);
    const v = this.conv3.call(x);

    // Attention path. The official logits are q·(k_n + pe_q − pe_n); q·pe_q is the
    // same for every neighbour n and cancels in the softmax, so the keys enter
    // as k − pe, subtracted before the (linear) reflection padding.
    const pe = this.conv_p.call(constant(positionGrid(h, w)));
    let qAtt = q.reshape(b * head, hd, h, w).mul(hd ** -0.5);
    if (s > 1) qAtt = qAtt.slice(2, 0, h, s).slice(3, 0, w, s);
    const keys = k.reshape(b * head, hd, h, w).sub(pe);
    const att = acmixLocalAttention(qAtt, keys, v.reshape(b * head, hd, h, w), {
      kernel: this.kernelAtt,
      stride: s,
      softmax: (logits) => this.softmax.call(logits),
    }).reshape(b, this.outPlanes, ho, wo);

    // Conv path: channel t·head + h of the fc input, channel d·k² + t of the grouped conv's input.
    const fAll = this.fc.call(concat([q, k, v].map((t) => t.reshape(b, head, hd, h * w)), 1));
    const conv = this.dep_conv.call(fAll.permute(0, 2, 1, 3).reshape(b, -1, h, w));

    return this.rate1.mul(att).add(this.rate2.mul(conv));
  }

  override extraRepr(): string {
    return `${this.inPlanes} → ${this.outPlanes}, head ${this.head}, attention ${this.kernelAtt}×${this.kernelAtt}${this.stride > 1 ? `, stride ${this.stride}` : ''}`;
  }
}

// ------------------------------------------------------------ ACmix-ResNet

/** The official `ACmix_ResNet(layers, **kwargs)` options (`ResNet/ResNet_ImageNet.py`). */
export interface ACmixResNetConfig {
  /** Bottlenecks per stage: [1, 2, 4, 1] (R26), [2, 3, 5, 2] (R38), [3, 4, 6, 3] (R50). */
  layers: readonly number[];
  k_att: number;
  head: number;
  k_conv: number;
  num_classes: number;
  /** Zero-init every bn3 weight (training only). */
  zero_init_residual: boolean;
  groups: number;
  width_per_group: number;
}

export const ACMIX_RESNET_DEFAULTS: ACmixResNetConfig = {
  layers: [3, 4, 6, 3],
  k_att: 7,
  head: 4,
  k_conv: 3,
  num_classes: 1000,
  zero_init_residual: false,
  groups: 1,
  width_per_group: 64,
};

function conv1x1(inPlanes: number, outPlanes: number, rng: Rng, stride = 1): Conv2d {
  return new Conv2d(inPlanes, outPlanes, 1, { rng, stride, bias: false });
}

/** torchvision's Bottleneck (v1.5: the stride sits in conv2) with ACmix as conv2. */
export class ACmixBottleneck extends Module {
  static readonly expansion = 4;
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: ACmix;
  bn2: BatchNorm2d;
  conv3: Conv2d;
  bn3: BatchNorm2d;
  downsample: Sequential | undefined;

  constructor(inPlanes: number, planes: number, c: ACmixResNetConfig, rng: Rng, stride: number, downsample: Sequential | undefined) {
    super();
    const width = Math.floor(planes * (c.width_per_group / 64)) * c.groups;
    const out = planes * ACmixBottleneck.expansion;
    this.conv1 = conv1x1(inPlanes, width, rng);
    this.bn1 = new BatchNorm2d(width);
    this.conv2 = new ACmix(width, width, { rng, kernel_att: c.k_att, head: c.head, kernel_conv: c.k_conv, stride });
    this.bn2 = new BatchNorm2d(width);
    this.conv3 = conv1x1(width, out, rng);
    this.bn3 = new BatchNorm2d(out);
    this.downsample = downsample;
  }

  forward(x: Tensor): Tensor {
    let y = this.bn1.call(this.conv1.call(x)).relu();
    y = this.bn2.call(this.conv2.call(y)).relu();
    y = this.bn3.call(this.conv3.call(y));
    const identity = this.downsample ? this.downsample.call(x) : x;
    return y.add(identity).relu();
  }
}

/** The official kaiming_normal_(mode='fan_out', nonlinearity='relu'): std √2 / √(out · kh · kw). */
function kaimingNormalFanOut(rng: Rng, shape: readonly number[]): NDArray<'float32'> {
  const fanOut = shape[0]! * shape.slice(2).reduce((a, d) => a * d, 1);
  return normal(rng, shape, Math.sqrt(2 / fanOut));
}

/**
 * ACmix-ResNet (`ACmix_ResNet`): torchvision ResNet stem (conv 7×7 s2, BN,
 * ReLU, max-pool 3 s2), four stages of ACmix bottlenecks (widths 64, 128, 256,
 * 512; stride 2 in the first block of stages 2–4), global average pool, `fc`.
 */
export class ACmixResNet extends ClassifierModel {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  maxpool = new MaxPool2d(3, 2, 1);
  layer1: Sequential;
  layer2: Sequential;
  layer3: Sequential;
  layer4: Sequential;
  fc: Linear;
  numClasses: number;
  readonly numFeatures: number;

  constructor(
    readonly config: ACmixResNetConfig,
    rng: Rng,
  ) {
    super();
    if (config.layers.length !== 4 || config.layers.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new ConfigError(`acmix_resnet: layers must be four positive block counts, got ${JSON.stringify(config.layers)}`);
    }
    this.conv1 = new Conv2d(3, 64, 7, { rng, stride: 2, padding: 3, bias: false });
    this.bn1 = new BatchNorm2d(64);
    let inPlanes = 64;
    const makeLayer = (planes: number, blocks: number, stride: number): Sequential => {
      const out = planes * ACmixBottleneck.expansion;
      const downsample = stride !== 1 || inPlanes !== out ? new Sequential(conv1x1(inPlanes, out, rng, stride), new BatchNorm2d(out)) : undefined;
      const list = [new ACmixBottleneck(inPlanes, planes, config, rng, stride, downsample)];
      inPlanes = out;
      for (let i = 1; i < blocks; i++) list.push(new ACmixBottleneck(inPlanes, planes, config, rng, 1, undefined));
      return new Sequential(...list);
    };
    this.layer1 = makeLayer(64, config.layers[0]!, 1);
    this.layer2 = makeLayer(128, config.layers[1]!, 2);
    this.layer3 = makeLayer(256, config.layers[2]!, 2);
    this.layer4 = makeLayer(512, config.layers[3]!, 2);
    this.numFeatures = inPlanes;
    this.numClasses = config.num_classes;
    this.fc = new Linear(inPlanes, config.num_classes, { rng });
    // As in ResNet.__init__: Kaiming-normal on every conv, which also overwrites
    // dep_conv's shift initialisation (the ResNet version trains without it).
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) m.weight.data = kaimingNormalFanOut(rng, m.weight.data.shape);
      if (m instanceof ACmixBottleneck && config.zero_init_residual) m.bn3.weight.data = filled([m.bn3.numFeatures], 0);
    }
  }

  forwardFeatures(x: Tensor): Tensor {
    let y = this.maxpool.call(this.bn1.call(this.conv1.call(x)).relu());
    for (const layer of [this.layer1, this.layer2, this.layer3, this.layer4]) y = layer.call(y);
    return y;
  }

  forwardHead(x: Tensor, preLogits = false): Tensor {
    const pooled = x.mean([2, 3]);
    return preLogits ? pooled : this.fc.call(pooled);
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.numClasses = numClasses;
    this.fc = new Linear(this.numFeatures, numClasses, { rng });
  }
}

// ------------------------------------------------------------ ACmix-Swin

/** [B, H, W, C] → [B·nW, ws, ws, C], windows row-major, all windows of image 0 first. */
function windowPartition(x: Tensor, ws: number): Tensor {
  const [b, h, w, c] = x.shape as [number, number, number, number];
  return x.reshape(b, h / ws, ws, w / ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, c);
}

/** Inverse of windowPartition: [B·nW, ws, ws, C] → [B, H, W, C]. */
function windowReverse(windows: Tensor, ws: number, h: number, w: number): Tensor {
  const c = windows.dim(-1);
  return windows.reshape(-1, h / ws, w / ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c);
}

/** Swin's relative_position_index [ws², ws²]: (yi − yj + ws − 1)·(2ws − 1) + (xi − xj + ws − 1). */
function swinRelativePositionIndex(ws: number): NDArray<'int64'> {
  const n = ws * ws;
  const idx: number[] = [];
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const dy = Math.floor(i / ws) - Math.floor(j / ws) + ws - 1;
      const dx = (i % ws) - (j % ws) + ws - 1;
      idx.push(dy * (2 * ws - 1) + dx);
    }
  }
  return NDArray.int64([n, n], idx);
}

/**
 * The shifted-window mask [nW, ws², ws²], as the official block builds it:
 * label the H×W map by region (rows [0, H−ws), [H−ws, H−shift), [H−shift, H),
 * columns likewise; label 3·rh + rw), partition the labels into windows, and
 * put −100 (not −inf) between tokens of different regions, 0 elsewhere.
 */
function shiftedWindowMask(h: number, w: number, ws: number, shift: number): NDArray<'float32'> {
  const region = (i: number, n: number) => (i < n - ws ? 0 : i < n - shift ? 1 : 2);
  const [nh, nw] = [h / ws, w / ws];
  const n = ws * ws;
  const mask = NDArray.float32([nh * nw, n, n]);
  for (let wy = 0; wy < nh; wy++) {
    for (let wx = 0; wx < nw; wx++) {
      const labels = Array.from({ length: n }, (_, t) => 3 * region(wy * ws + Math.floor(t / ws), h) + region(wx * ws + (t % ws), w));
      const base = (wy * nw + wx) * n * n;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) mask.data[base + i * n + j] = labels[i] === labels[j] ? 0 : -100;
    }
  }
  return mask;
}

/**
 * The official mask is −100 (the buffer keeps it). Added as is, it leaves attention weights of e^−100 ≈ 4·10⁻⁴⁴:
 * float32 denormals, which the softmax and the attention·v product process several times slower (ACmix-Swin-T's
 * forward took 1.2× as long), for terms far below float32 resolution. Scaled to −10⁴ they underflow to exact zeros:
 * the outputs agree to float32 rounding unless a masked logit exceeds its row's unmasked maximum by more than ~84.
 */
const MASK_SCALE = 100;

/**
 * `WindowAttention_acmix`: on the LN-ed (and rolled) map [B, H, W, C],
 * - one `qkv` Linear (channel t·C + h·hd + d);
 * - conv path on the whole rolled map (zero padding at the border, across
 *   window boundaries and the roll seam): `fc` (1×1 conv with bias over the
 *   3·heads axis) → channel d·9 + t → `dep_conv` (3×3, groups hd, no bias);
 * - attention path: window-partition the qkv output, q·kᵀ·hd^−½ + relative
 *   position bias (+ the −100 mask of shifted blocks), softmax, ·v, `proj`;
 * - out = rate1 · attention + rate2 · conv (`proj` is on the attention path only).
 */
export class WindowAttentionACmix extends Module {
  relative_position_bias_table: Parameter;
  rate1: Parameter;
  rate2: Parameter;
  relative_position_index: Parameter;
  qkv: Linear;
  attn_drop: Dropout;
  proj: Linear;
  proj_drop: Dropout;
  softmax = new Softmax(-1);
  fc: Conv2d;
  dep_conv: Conv2d;
  readonly scale: number;

  constructor(
    readonly dim: number,
    readonly windowSize: number,
    readonly numHeads: number,
    opts: { rng: Rng; qkv_bias: boolean; qk_scale: number | null; attn_drop: number; proj_drop: number },
  ) {
    super();
    const { rng } = opts;
    if (dim % numHeads !== 0) throw new ConfigError(`WindowAttention_acmix: dim ${dim} is not divisible by ${numHeads} heads`);
    const hd = dim / numHeads;
    this.scale = opts.qk_scale ?? hd ** -0.5;
    this.relative_position_bias_table = new Parameter(truncNormal(rng, [(2 * windowSize - 1) ** 2, numHeads]));
    // `ones` in the official code fills 0.5.
    this.rate1 = new Parameter(filled([1], 0.5));
    this.rate2 = new Parameter(filled([1], 0.5));
    this.relative_position_index = new Parameter(swinRelativePositionIndex(windowSize));
    this.qkv = new Linear(dim, 3 * dim, { rng, bias: opts.qkv_bias, init: 'trunc_normal' });
    this.attn_drop = new Dropout(opts.attn_drop);
    this.proj = new Linear(dim, dim, { rng, init: 'trunc_normal' });
    this.proj_drop = new Dropout(opts.proj_drop);
    this.fc = new Conv2d(3 * numHeads, 9, 1, { rng });
    this.dep_conv = new Conv2d(9 * hd, dim, 3, { rng, bias: false, groups: hd, padding: 1 });
    this.dep_conv.weight.data = shiftKernels(dim, 3);
  }

  /** bias[h, i, j] = table[index[i, j], h], [heads, ws², ws²]. */
  private relativePositionBias(): Tensor {
    const n = this.windowSize ** 2;
    return this.relative_position_bias_table.indexSelect(0, this.relative_position_index.reshape(-1)).reshape(n, n, -1).permute(2, 0, 1);
  }

  /** x: [B, H, W, C]; mask: [nW, ws², ws²] for shifted blocks. Returns [B, H, W, C]. */
  forward(x: Tensor, mask?: Tensor): Tensor {
    const [b, h, w, c] = x.shape as [number, number, number, number];
    const nh = this.numHeads;
    const hd = c / nh;
    const ws = this.windowSize;
    const n = ws * ws;
    const qkv = this.qkv.call(x);

    const fAll = qkv.reshape(b, h * w, 3 * nh, hd).permute(0, 2, 1, 3);
    const fConv = this.fc.call(fAll).permute(0, 3, 1, 2).reshape(b, 9 * hd, h, w);
    const outConv = this.dep_conv.call(fConv).permute(0, 2, 3, 1);

    const windows = windowPartition(qkv, ws).reshape(-1, n, 3, nh, hd).permute(2, 0, 3, 1, 4);
    const [q, k, v] = [0, 1, 2].map((i) => windows.select(0, i)) as [Tensor, Tensor, Tensor];
    let attn = q.mul(this.scale).matmul(k.mT);
    const bias = this.relativePositionBias();
    if (mask) {
      // Bias and mask are summed first (one pass over the attention logits instead of two).
      const biasAndMask = bias.add(mask.mul(MASK_SCALE).unsqueeze(1));
      attn = attn.reshape(-1, mask.dim(0), nh, n, n).add(biasAndMask).reshape(-1, nh, n, n);
    } else {
      attn = attn.add(bias.unsqueeze(0));
    }
    attn = this.attn_drop.call(this.softmax.call(attn));
    const y = this.proj.call(attn.matmul(v).transpose(1, 2).reshape(-1, n, c));
    const outAtt = windowReverse(y.reshape(-1, ws, ws, c), ws, h, w);
    return this.proj_drop.call(this.rate1.mul(outAtt).add(this.rate2.mul(outConv)));
  }

  override extraRepr(): string {
    return `dim ${this.dim}, window ${this.windowSize}, heads ${this.numHeads}`;
  }
}

interface SwinBlockOptions {
  rng: Rng;
  numHeads: number;
  windowSize: number;
  shiftSize: number;
  mlpRatio: number;
  qkvBias: boolean;
  qkScale: number | null;
  drop: number;
  attnDrop: number;
  dropPath: number;
}

/** Swin block: x + roll⁻¹(attn(roll(LN(x)))), then x + MLP(LN(x)). */
class SwinTransformerBlockACmix extends Module {
  /** Present only in shifted blocks (a persistent F32 buffer of 0 / −100). */
  attn_mask: Parameter | undefined;
  norm1: LayerNorm;
  attn: WindowAttentionACmix;
  drop_path: DropPath;
  norm2: LayerNorm;
  mlp: Mlp;
  readonly windowSize: number;
  readonly shiftSize: number;

  constructor(
    readonly dim: number,
    readonly resolution: readonly [number, number],
    o: SwinBlockOptions,
  ) {
    super();
    // As the official block: a map no larger than the window is one window, unshifted.
    const small = Math.min(...resolution) <= o.windowSize;
    this.windowSize = small ? Math.min(...resolution) : o.windowSize;
    this.shiftSize = small ? 0 : o.shiftSize;
    this.norm1 = new LayerNorm(dim);
    this.attn = new WindowAttentionACmix(dim, this.windowSize, o.numHeads, { rng: o.rng, qkv_bias: o.qkvBias, qk_scale: o.qkScale, attn_drop: o.attnDrop, proj_drop: o.drop });
    this.drop_path = new DropPath(o.dropPath);
    this.norm2 = new LayerNorm(dim);
    this.mlp = new Mlp(dim, Math.floor(dim * o.mlpRatio), { rng: o.rng, drop: o.drop, init: 'trunc_normal' });
    if (this.shiftSize > 0) this.attn_mask = new Parameter(shiftedWindowMask(resolution[0], resolution[1], this.windowSize, this.shiftSize), { trainable: false });
  }

  forward(x: Tensor): Tensor {
    const [h, w] = this.resolution;
    const [b, l, c] = x.shape as [number, number, number];
    if (l !== h * w) throw new ShapeError(`${this.path}: expected ${h}×${w} = ${h * w} tokens, got ${l}`);
    const s = this.shiftSize;
    let z = this.norm1.call(x).reshape(b, h, w, c);
    if (s > 0) z = z.roll([-s, -s], [1, 2]);
    z = this.attn_mask ? this.attn.call(z, this.attn_mask) : this.attn.call(z);
    if (s > 0) z = z.roll([s, s], [1, 2]);
    const y = x.add(this.drop_path.call(z.reshape(b, h * w, c)));
    return y.add(this.drop_path.call(this.mlp.call(this.norm2.call(y))));
  }
}

/** 2×2 patch merging: concat [x(even, even), x(odd, even), x(even, odd), x(odd, odd)] → LN(4C) → Linear(4C → 2C, no bias). */
class PatchMerging extends Module {
  reduction: Linear;
  norm: LayerNorm;

  constructor(
    readonly resolution: readonly [number, number],
    readonly dim: number,
    rng: Rng,
  ) {
    super();
    this.reduction = new Linear(4 * dim, 2 * dim, { rng, bias: false, init: 'trunc_normal' });
    this.norm = new LayerNorm(4 * dim);
  }

  forward(x: Tensor): Tensor {
    const [h, w] = this.resolution;
    const [b, , c] = x.shape as [number, number, number];
    const grid = x.reshape(b, h, w, c);
    const at = (row: number, col: number) => grid.slice(1, row, h, 2).slice(2, col, w, 2);
    const merged = concat([at(0, 0), at(1, 0), at(0, 1), at(1, 1)], -1).reshape(b, -1, 4 * c);
    return this.reduction.call(this.norm.call(merged));
  }
}

/** Conv patch×patch stride patch → tokens [B, H/p·W/p, C] → optional LN. */
class PatchEmbed extends Module {
  proj: Conv2d;
  norm: LayerNorm | undefined;

  constructor(
    readonly imgSize: readonly [number, number],
    readonly patchSize: number,
    inChans: number,
    embedDim: number,
    patchNorm: boolean,
    rng: Rng,
  ) {
    super();
    this.proj = new Conv2d(inChans, embedDim, patchSize, { rng, stride: patchSize });
    this.norm = patchNorm ? new LayerNorm(embedDim) : undefined;
  }

  forward(x: Tensor): Tensor {
    const [, , h, w] = x.shape;
    const [eh, ew] = this.imgSize;
    // The official PatchEmbed asserts the size: every block's mask and resolution are fixed at construction.
    if (x.rank !== 4 || h !== eh || w !== ew) throw new ShapeError(`${this.path}: input ${fmtShape(x.shape)} does not match the model's image size ${eh}×${ew}; build the model with img_size for this input or resize the image`);
    const y = this.proj.call(x).flatten(2).transpose(1, 2);
    return this.norm ? this.norm.call(y) : y;
  }
}

/** One stage: its blocks, then (stages 0–2) PatchMerging. */
class BasicLayer extends Module {
  blocks: SwinTransformerBlockACmix[];
  downsample: PatchMerging | undefined;

  constructor(blocks: SwinTransformerBlockACmix[], downsample: PatchMerging | undefined) {
    super();
    this.blocks = blocks;
    this.downsample = downsample;
  }

  forward(x: Tensor): Tensor {
    const y = this.blocks.reduce((t, blk) => blk.call(t), x);
    return this.downsample ? this.downsample.call(y) : y;
  }
}

/** The official `SwinTransformer_acmix(...)` options. */
export interface SwinTransformerACmixConfig {
  img_size: number | readonly [number, number];
  patch_size: number;
  in_chans: number;
  /** 0: no head (forward returns the pooled features). */
  num_classes: number;
  embed_dim: number;
  depths: readonly number[];
  num_heads: readonly number[];
  window_size: number;
  mlp_ratio: number;
  qkv_bias: boolean;
  /** Overrides head_dim^−½ (null: the default). */
  qk_scale: number | null;
  drop_rate: number;
  attn_drop_rate: number;
  /** Linearly spaced over all blocks (0.2 for T, 0.3 for S in the official configs). */
  drop_path_rate: number;
  /** Absolute position embedding on the patch tokens. */
  ape: boolean;
  /** LayerNorm after the patch embedding. */
  patch_norm: boolean;
  /** Gradient checkpointing in PyTorch; accepted and ignored (graphs are static here). */
  use_checkpoint: boolean;
}

/** The official class defaults (Swin-T shape, drop_path_rate 0.1). */
export const ACMIX_SWIN_DEFAULTS: SwinTransformerACmixConfig = {
  img_size: 224,
  patch_size: 4,
  in_chans: 3,
  num_classes: 1000,
  embed_dim: 96,
  depths: [2, 2, 6, 2],
  num_heads: [3, 6, 12, 24],
  window_size: 7,
  mlp_ratio: 4,
  qkv_bias: true,
  qk_scale: null,
  drop_rate: 0,
  attn_drop_rate: 0,
  drop_path_rate: 0.1,
  ape: false,
  patch_norm: true,
  use_checkpoint: false,
};

/**
 * `SwinTransformer_acmix`: Swin with `WindowAttention_acmix` in every block.
 * Patch embed (+ LN) → stages of (shifted) window blocks with PatchMerging →
 * LN → token mean → `head`. Block, mask and resolution are fixed by img_size.
 */
export class SwinTransformerACmix extends ClassifierModel {
  absolute_pos_embed: Parameter | undefined;
  patch_embed: PatchEmbed;
  pos_drop: Dropout;
  layers: BasicLayer[];
  norm: LayerNorm;
  head: Linear | Identity;
  numClasses: number;
  readonly numFeatures: number;

  constructor(
    readonly config: SwinTransformerACmixConfig,
    rng: Rng,
  ) {
    super();
    const c = config;
    const img: [number, number] = typeof c.img_size === 'number' ? [c.img_size, c.img_size] : [c.img_size[0], c.img_size[1]];
    const stages = c.depths.length;
    if (c.num_heads.length !== stages) throw new ConfigError(`acmix_swin: ${stages} depths but ${c.num_heads.length} num_heads`);
    const res: [number, number] = [Math.floor(img[0] / c.patch_size), Math.floor(img[1] / c.patch_size)];
    this.patch_embed = new PatchEmbed(img, c.patch_size, c.in_chans, c.embed_dim, c.patch_norm, rng);
    if (c.ape) this.absolute_pos_embed = new Parameter(truncNormal(rng, [1, res[0] * res[1], c.embed_dim]));
    this.pos_drop = new Dropout(c.drop_rate);
    const total = c.depths.reduce((a, d) => a + d, 0);
    const dpr = Array.from({ length: total }, (_, i) => (total > 1 ? (c.drop_path_rate * i) / (total - 1) : 0));
    this.layers = [];
    let blockIndex = 0;
    for (let i = 0; i < stages; i++) {
      const dim = c.embed_dim * 2 ** i;
      const r: [number, number] = [Math.floor(res[0] / 2 ** i), Math.floor(res[1] / 2 ** i)];
      const ws = Math.min(c.window_size, ...r);
      if (r[0] % ws !== 0 || r[1] % ws !== 0) throw new ConfigError(`acmix_swin: stage ${i} runs at ${r[0]}×${r[1]}, not a multiple of the window ${ws}; choose img_size = patch_size · window_size · 2^${stages - 1} · k`);
      if (i < stages - 1 && (r[0] % 2 !== 0 || r[1] % 2 !== 0)) throw new ConfigError(`acmix_swin: stage ${i} resolution ${r[0]}×${r[1]} is odd, PatchMerging needs even sides`);
      const blocks = Array.from(
        { length: c.depths[i]! },
        (_, j) =>
          new SwinTransformerBlockACmix(dim, r, {
            rng,
            numHeads: c.num_heads[i]!,
            windowSize: c.window_size,
            shiftSize: j % 2 === 0 ? 0 : Math.floor(c.window_size / 2),
            mlpRatio: c.mlp_ratio,
            qkvBias: c.qkv_bias,
            qkScale: c.qk_scale,
            drop: c.drop_rate,
            attnDrop: c.attn_drop_rate,
            dropPath: dpr[blockIndex++]!,
          }),
      );
      this.layers.push(new BasicLayer(blocks, i < stages - 1 ? new PatchMerging(r, dim, rng) : undefined));
    }
    this.numFeatures = c.embed_dim * 2 ** (stages - 1);
    this.norm = new LayerNorm(this.numFeatures);
    this.numClasses = c.num_classes;
    this.head = this.makeHead(c.num_classes, rng);
  }

  private makeHead(numClasses: number, rng: Rng): Linear | Identity {
    return numClasses > 0 ? new Linear(this.numFeatures, numClasses, { rng, init: 'trunc_normal' }) : new Identity();
  }

  /** [B, 3, H, W] → the final LN-ed tokens [B, L, C]. */
  forwardFeatures(x: Tensor): Tensor {
    let y = this.patch_embed.call(x);
    if (this.absolute_pos_embed) y = y.add(this.absolute_pos_embed);
    y = this.layers.reduce((t, layer) => layer.call(t), this.pos_drop.call(y));
    return this.norm.call(y);
  }

  forwardHead(x: Tensor, preLogits = false): Tensor {
    const pooled = x.mean(1);
    return preLogits ? pooled : this.head.call(pooled);
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.numClasses = numClasses;
    this.head = this.makeHead(numClasses, rng);
  }
}

// ------------------------------------------------------------ checkpoint filters

const SWIN_RECOMPUTED = /(^|\.)(relative_position_index|attn_mask)$/;

/**
 * The official ACmix-Swin checkpoint (`checkpoint['model']`) → this model's
 * state dict. `relative_position_index` and `attn_mask` are geometry, not
 * weights: the model's own values replace the file's (older Swin checkpoints
 * lack them), so every other key still loads strictly. (ACmix-ResNet needs no
 * filter: the loader strips the `module.` prefix of ResNet/main.py's DDP
 * checkpoints.)
 */
export function acmixSwinCheckpointFilter(stateDict: ReadonlyMap<string, NDArray>, model: Module): Map<string, NDArray> {
  const out = new Map([...stateDict].filter(([k]) => !SWIN_RECOMPUTED.test(k)));
  for (const [k, p] of model.namedBuffers()) if (SWIN_RECOMPUTED.test(k)) out.set(k, p.data);
  return out;
}

// ------------------------------------------------------------ pretrained configs

/** ResNet/main.py's evaluation: Resize(256) (bilinear, torchvision's default) → CenterCrop(224), ImageNet mean/std. */
function resnetPretrained(top1: number): PretrainedConfig {
  return imagenetPretrained({ interpolation: 'bilinear', cropPct: 224 / 256, paperTop1: top1 });
}

/** Swin's evaluation: bicubic resize to 256 (int(256/224·224), TEST.CROP), centre crop 224, ImageNet mean/std. */
function swinPretrained(top1: number, tsinghua: string, driveId: string): PretrainedConfig {
  return imagenetPretrained({
    interpolation: 'bicubic',
    cropPct: 224 / 256,
    paperTop1: top1,
    weights: {
      url: `https://cloud.tsinghua.edu.cn/f/${tsinghua}/`,
      format: 'pth',
      top1,
      notes:
        `Also on Google Drive (id ${driveId}). A torch.save of {model, optimizer, lr_scheduler, max_accuracy, epoch, config[, amp]}: ` +
        "the weights are checkpoint['model'] (no module. prefix); config is a yacs CfgNode, which our loader reconstructs inert. " +
        'The loader recomputes relative_position_index and attn_mask (acmixSwinCheckpointFilter).',
    },
  });
}

// ------------------------------------------------------------ registered variants

/** The ResNet depths of the paper's Table (README rows ResNet-26/38/50); the repository ships only `ACmix_ResNet(layers)`. */
const RESNET_VARIANTS: readonly { name: string; layers: readonly number[]; top1: number }[] = [
  { name: 'acmix_resnet26', layers: [1, 2, 4, 1], top1: 76.1 },
  { name: 'acmix_resnet38', layers: [2, 3, 5, 2], top1: 77.4 },
  { name: 'acmix_resnet50', layers: [3, 4, 6, 3], top1: 77.8 },
];

/** `configs/acmix_swin_{tiny,small}_patch4_window7_224.yaml`. */
const SWIN_VARIANTS: readonly { name: string; config: Partial<SwinTransformerACmixConfig>; top1: number; tsinghua: string; drive: string }[] = [
  { name: 'acmix_swin_tiny', config: { embed_dim: 96, depths: [2, 2, 6, 2], num_heads: [3, 6, 12, 24], window_size: 7, drop_path_rate: 0.2 }, top1: 81.9, tsinghua: '210c89a6f9eb4bd0beb6', drive: '1qJnYhtQ65rWd0zUuV9eZQW5Wxj-TiiSg' },
  { name: 'acmix_swin_small', config: { embed_dim: 96, depths: [2, 2, 18, 2], num_heads: [3, 6, 12, 24], window_size: 7, drop_path_rate: 0.3 }, top1: 83.5, tsinghua: '8bed555e75c840f8a00d', drive: '12PhN5YOEtWAgO8eSLhopfCVZ7JozMf9T' },
];

registerFamily<ACmixResNetConfig>({
  name: 'acmix_resnet',
  description: 'ACmix-ResNet: ResNet bottlenecks with ACmix (7×7 sliding-window attention + shift conv) as the 3×3 conv (Pan et al., CVPR 2022). Official code: LeapLabTHU/ACmix ResNet/. No weights were published.',
  defaults: ACMIX_RESNET_DEFAULTS,
  build: (config, rng) => new ACmixResNet(config, rng),
});

registerFamily<SwinTransformerACmixConfig>({
  name: 'acmix_swin',
  description: 'ACmix-Swin: Swin Transformer with ACmix window attention (Pan et al., CVPR 2022). Official code: LeapLabTHU/ACmix Swin-Transformer/.',
  defaults: ACMIX_SWIN_DEFAULTS,
  build: (config, rng) => new SwinTransformerACmix(config, rng),
  filterCheckpoint: acmixSwinCheckpointFilter,
});

for (const v of RESNET_VARIANTS) {
  registerVariant({
    name: v.name,
    family: 'acmix_resnet',
    config: { layers: v.layers },
    pretrained: resnetPretrained(v.top1),
    description: `ACmix-ResNet-${v.name.slice(-2)}: bottlenecks ${v.layers.join('-')} (no published weights; paper top-1 ${v.top1})`,
  });
}

for (const v of SWIN_VARIANTS) {
  registerVariant({
    name: v.name,
    family: 'acmix_swin',
    config: v.config,
    pretrained: swinPretrained(v.top1, v.tsinghua, v.drive),
    description: `ACmix-Swin-${v.name.endsWith('tiny') ? 'T' : 'S'}: C=96, depths ${v.config.depths!.join('-')}, heads 3-6-12-24, window 7`,
  });
}
