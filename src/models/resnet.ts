/**
 * ResNet (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016),
 * exactly as torchvision builds it: the "v1.5" bottleneck (stride on the 3×3),
 * torchvision's module tree and state-dict keys (`conv1`, `bn1`,
 * `layer1.0.conv1`, …, `layer2.0.downsample.0/1`, `fc`), so a torchvision
 * checkpoint loads unchanged. It is the baseline of the hybrid families and
 * the host network of X-volution (xvolution.ts), which swaps chosen
 * "3×3 conv → BN" pairs for its own module through a `ConvBnReplacer`.
 */
import { ConfigError } from '../errors.js';
import { filled, normal } from '../nn/init.js';
import { BatchNorm2d, Conv2d, GlobalAvgPool2d, Identity, Linear, MaxPool2d, ReLU, Sequential } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import type { Tensor } from '../tensor/tensor.js';
import { ClassifierModel, IMAGENET_MEAN, IMAGENET_STD, type PretrainedConfig, registerFamily, registerVariant } from './registry.js';

/** torchvision's `ResNet(block, layers, num_classes, zero_init_residual, groups, width_per_group)`. */
export interface ResNetConfig {
  block: 'basic' | 'bottleneck';
  /** Blocks per stage (layer1..layer4). */
  layers: readonly number[];
  num_classes: number;
  /** Zero the last BN's γ of every residual branch, so each block starts as the identity. */
  zero_init_residual: boolean;
  /** Bottleneck only: grouped 3×3 convs (ResNeXt). */
  groups: number;
  /** Bottleneck only: 3×3 width per group at 64 planes (wide ResNets). */
  width_per_group: number;
}

/** A 3×3 "conv → BN" pair of a block, as offered to a host-network replacer. */
export interface ConvBnSite {
  /** Module path of the conv, e.g. `layer3.0.conv2`; its BN is the same path with `conv` → `bn`. */
  path: string;
  /** 1-based residual stage (layer1 = 1). */
  stage: number;
  inChannels: number;
  outChannels: number;
  stride: number;
  groups: number;
}

/** Returns a module that replaces the whole pair (conv and BN), or undefined to keep it. */
export type ConvBnReplacer = (site: ConvBnSite) => Module | undefined;

/** torchvision's init for every conv: kaiming_normal_(mode='fan_out', nonlinearity='relu'). */
export function kaimingConv(inChannels: number, outChannels: number, kernel: number, opts: { rng: Rng; stride?: number; groups?: number; bias?: boolean }): Conv2d {
  const conv = new Conv2d(inChannels, outChannels, kernel, { rng: opts.rng, stride: opts.stride ?? 1, padding: (kernel - 1) >> 1, groups: opts.groups ?? 1, bias: opts.bias ?? false });
  conv.weight.data = normal(opts.rng, conv.weight.data.shape, Math.sqrt(2 / (outChannels * kernel * kernel)));
  return conv;
}

/** A 3×3 conv and its BN, or the replacer's module in their place (then the BN slot is empty). */
function convBn3x3(site: ConvBnSite, rng: Rng, replace: ConvBnReplacer | undefined): [Module, BatchNorm2d | undefined] {
  const swapped = replace?.(site);
  if (swapped) return [swapped, undefined];
  return [kaimingConv(site.inChannels, site.outChannels, 3, { rng, stride: site.stride, groups: site.groups }), new BatchNorm2d(site.outChannels)];
}

function withBn(bn: BatchNorm2d | undefined, x: Tensor): Tensor {
  return bn ? bn.call(x) : x;
}

export interface BlockArgs {
  /** Module path of the block, e.g. `layer3.0`. */
  path: string;
  stage: number;
  inplanes: number;
  planes: number;
  stride: number;
  downsample: Sequential | undefined;
  groups: number;
  widthPerGroup: number;
  rng: Rng;
  replace: ConvBnReplacer | undefined;
}

/** Two 3×3 convs (ResNet-18/34). */
export class BasicBlock extends Module {
  static readonly expansion = 1;
  conv1: Module;
  bn1: BatchNorm2d | undefined;
  relu = new ReLU();
  conv2: Module;
  bn2: BatchNorm2d | undefined;
  downsample: Sequential | undefined;

  constructor(a: BlockArgs) {
    super();
    if (a.groups !== 1 || a.widthPerGroup !== 64) throw new ConfigError('resnet: BasicBlock only supports groups=1 and width_per_group=64 (as torchvision)');
    const site = (conv: string, inChannels: number, stride: number): ConvBnSite => ({ path: `${a.path}.${conv}`, stage: a.stage, inChannels, outChannels: a.planes, stride, groups: 1 });
    [this.conv1, this.bn1] = convBn3x3(site('conv1', a.inplanes, a.stride), a.rng, a.replace);
    [this.conv2, this.bn2] = convBn3x3(site('conv2', a.planes, 1), a.rng, a.replace);
    this.downsample = a.downsample;
  }

  /** The BN that closes the residual branch (absent when its pair was replaced). */
  get lastBn(): BatchNorm2d | undefined {
    return this.bn2;
  }

  forward(x: Tensor): Tensor {
    const identity = this.downsample ? this.downsample.call(x) : x;
    const out = withBn(this.bn2, this.conv2.call(this.relu.call(withBn(this.bn1, this.conv1.call(x)))));
    return this.relu.call(out.add(identity));
  }
}

/** 1×1 → 3×3 (strided, grouped) → 1×1 ×4 (ResNet-50 and deeper; torchvision "v1.5"). */
export class Bottleneck extends Module {
  static readonly expansion = 4;
  conv1: Conv2d;
  bn1: BatchNorm2d;
  conv2: Module;
  bn2: BatchNorm2d | undefined;
  conv3: Conv2d;
  bn3: BatchNorm2d;
  relu = new ReLU();
  downsample: Sequential | undefined;

  constructor(a: BlockArgs) {
    super();
    const width = Math.floor(a.planes * (a.widthPerGroup / 64)) * a.groups;
    this.conv1 = kaimingConv(a.inplanes, width, 1, { rng: a.rng });
    this.bn1 = new BatchNorm2d(width);
    [this.conv2, this.bn2] = convBn3x3({ path: `${a.path}.conv2`, stage: a.stage, inChannels: width, outChannels: width, stride: a.stride, groups: a.groups }, a.rng, a.replace);
    this.conv3 = kaimingConv(width, a.planes * Bottleneck.expansion, 1, { rng: a.rng });
    this.bn3 = new BatchNorm2d(a.planes * Bottleneck.expansion);
    this.downsample = a.downsample;
  }

  get lastBn(): BatchNorm2d {
    return this.bn3;
  }

  forward(x: Tensor): Tensor {
    const identity = this.downsample ? this.downsample.call(x) : x;
    let out = this.relu.call(this.bn1.call(this.conv1.call(x)));
    out = this.relu.call(withBn(this.bn2, this.conv2.call(out)));
    out = this.bn3.call(this.conv3.call(out));
    return this.relu.call(out.add(identity));
  }
}

export type ResNetBlock = BasicBlock | Bottleneck;

export class ResNet extends ClassifierModel {
  conv1: Conv2d;
  bn1: BatchNorm2d;
  relu = new ReLU();
  maxpool = new MaxPool2d(3, 2, 1);
  layer1: Sequential;
  layer2: Sequential;
  layer3: Sequential;
  layer4: Sequential;
  avgpool = new GlobalAvgPool2d();
  fc: Linear | Identity;
  numClasses: number;
  config: ResNetConfig;
  /** Channels of forwardFeatures' output (512 · expansion). */
  readonly numFeatures: number;

  /** `replace` lets a host-network family (X-volution) swap 3×3 conv/BN pairs at construction. */
  constructor(config: ResNetConfig, rng: Rng, replace?: ConvBnReplacer) {
    super();
    validateResNetConfig(config);
    this.config = config;
    const expansion = config.block === 'basic' ? BasicBlock.expansion : Bottleneck.expansion;
    this.conv1 = kaimingConv(3, 64, 7, { rng, stride: 2 });
    this.bn1 = new BatchNorm2d(64);
    let inplanes = 64;
    const makeStage = (stage: number, planes: number, stride: number): Sequential => {
      const blocks: ResNetBlock[] = [];
      for (let i = 0; i < config.layers[stage - 1]!; i++) {
        const s = i === 0 ? stride : 1;
        // torchvision's projection shortcut: 1×1 conv (strided) + BN, whenever the shape changes.
        const downsample = i === 0 && (stride !== 1 || inplanes !== planes * expansion) ? new Sequential(kaimingConv(inplanes, planes * expansion, 1, { rng, stride }), new BatchNorm2d(planes * expansion)) : undefined;
        const args: BlockArgs = { path: `layer${stage}.${i}`, stage, inplanes, planes, stride: s, downsample, groups: config.groups, widthPerGroup: config.width_per_group, rng, replace };
        blocks.push(config.block === 'basic' ? new BasicBlock(args) : new Bottleneck(args));
        inplanes = planes * expansion;
      }
      return new Sequential(...blocks);
    };
    this.layer1 = makeStage(1, 64, 1);
    this.layer2 = makeStage(2, 128, 2);
    this.layer3 = makeStage(3, 256, 2);
    this.layer4 = makeStage(4, 512, 2);
    this.numFeatures = 512 * expansion;
    this.numClasses = config.num_classes;
    this.fc = makeHead(this.numFeatures, config.num_classes, rng);
    // A replaced last pair (X-volution) keeps its own init.
    if (config.zero_init_residual) for (const bn of this.blocks().map((b) => b.lastBn)) if (bn) bn.weight.data = filled([bn.numFeatures], 0);
  }

  /** Every residual block, stage by stage. */
  blocks(): ResNetBlock[] {
    return [this.layer1, this.layer2, this.layer3, this.layer4].flatMap((s) => s.layers.filter((b): b is ResNetBlock => b instanceof BasicBlock || b instanceof Bottleneck));
  }

  forwardFeatures(x: Tensor): Tensor {
    x = this.maxpool.call(this.relu.call(this.bn1.call(this.conv1.call(x))));
    return this.layer4.call(this.layer3.call(this.layer2.call(this.layer1.call(x))));
  }

  forwardHead(x: Tensor, preLogits = false): Tensor {
    const pooled = this.avgpool.call(x).flatten(1);
    return preLogits ? pooled : this.fc.call(pooled);
  }

  resetClassifier(numClasses: number, rng: Rng): void {
    this.fc = makeHead(this.numFeatures, numClasses, rng);
    this.numClasses = numClasses;
    this.config = { ...this.config, num_classes: numClasses };
  }
}

/** nn.Linear with PyTorch's default init; 0 classes gives the pooled features (timm's convention). */
function makeHead(features: number, numClasses: number, rng: Rng): Linear | Identity {
  return numClasses > 0 ? new Linear(features, numClasses, { rng }) : new Identity();
}

function validateResNetConfig(c: ResNetConfig): void {
  const bad = (msg: string) => new ConfigError(`resnet: ${msg}`);
  if (c.block !== 'basic' && c.block !== 'bottleneck') throw bad(`block must be 'basic' or 'bottleneck', got ${JSON.stringify(c.block)}`);
  if (!Array.isArray(c.layers) || c.layers.length !== 4 || !c.layers.every((n) => Number.isInteger(n) && n >= 1)) throw bad(`layers must be 4 positive integers (blocks per stage), got ${JSON.stringify(c.layers)}`);
  if (!Number.isInteger(c.num_classes) || c.num_classes < 0) throw bad(`num_classes must be a non-negative integer, got ${c.num_classes}`);
  if (!Number.isInteger(c.groups) || c.groups < 1) throw bad(`groups must be a positive integer, got ${c.groups}`);
  if (!Number.isInteger(c.width_per_group) || c.width_per_group < 1) throw bad(`width_per_group must be a positive integer, got ${c.width_per_group}`);
}

// ------------------------------------------------------------ pretrained configs

/** torchvision's ImageNet evaluation transform: resize 256 (bilinear), centre crop 224, ImageNet mean/std. */
export function torchvisionPretrained(over: Partial<PretrainedConfig> = {}): PretrainedConfig {
  return { inputSize: [3, 224, 224], mean: IMAGENET_MEAN, std: IMAGENET_STD, interpolation: 'bilinear', cropPct: 0.875, numClasses: 1000, ...over };
}

const RESNET_DEFAULTS: ResNetConfig = { block: 'bottleneck', layers: [3, 4, 6, 3], num_classes: 1000, zero_init_residual: false, groups: 1, width_per_group: 64 };

/** The published torchvision variants, with the IMAGENET1K_V1 weights (the original ResNet recipe). */
export const RESNET_VARIANTS: Record<string, { config: Partial<ResNetConfig>; weights: string; top1: number }> = {
  resnet18: { config: { block: 'basic', layers: [2, 2, 2, 2] }, weights: 'https://download.pytorch.org/models/resnet18-f37072fd.pth', top1: 69.758 },
  resnet34: { config: { block: 'basic', layers: [3, 4, 6, 3] }, weights: 'https://download.pytorch.org/models/resnet34-b627a593.pth', top1: 73.314 },
  resnet50: { config: { block: 'bottleneck', layers: [3, 4, 6, 3] }, weights: 'https://download.pytorch.org/models/resnet50-0676ba61.pth', top1: 76.13 },
};

registerFamily<ResNetConfig>({
  name: 'resnet',
  description: 'ResNet (He et al., CVPR 2016), torchvision implementation (v1.5 bottleneck) and key names; torchvision checkpoints load unchanged',
  defaults: RESNET_DEFAULTS,
  build: (config, rng) => new ResNet(config, rng),
});

for (const [name, v] of Object.entries(RESNET_VARIANTS)) {
  registerVariant({
    name,
    family: 'resnet',
    config: v.config,
    pretrained: torchvisionPretrained({ weights: { url: v.weights, format: 'pth', top1: v.top1, notes: 'torchvision IMAGENET1K_V1 weights (the original recipe); top-1 as torchvision reports it' } }),
    description: `torchvision ${name}`,
  });
}
