/**
 * The torchvision ResNet: parameter counts and state-dict keys equal
 * torchvision's, small forwards on both backends, the classifier methods,
 * the pretrained configs and bad input.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { BatchNorm2d, Identity } from '../../src/nn/layers.js';
import { Module } from '../../src/nn/module.js';
import { runModule } from '../../src/nn/run.js';
import { createModel, getVariant, listModels } from '../../src/models/registry.js';
import '../../src/models/resnet.js';
import type { ResNet, ResNetConfig } from '../../src/models/resnet.js';
import { Rng } from '../../src/rng.js';
import { trace } from '../../src/tensor/function.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import { loadFixture } from '../helpers/fixtures.js';
import { expectClose, randn } from '../helpers/opcheck.js';

const f32 = (a: NDArray) => NDArray.float32(a.shape, a.toFloat64());
const keysOf = (m: ResNet) => [...m.stateDict()].map(([k, v]) => `${k} ${v.dtype} [${v.shape.join(', ')}]`);
const bn = (p: string, n: number) => ['weight', 'bias', 'running_mean', 'running_var'].map((s) => `${p}.${s} float32 [${n}]`).concat(`${p}.num_batches_tracked int64 []`);

/** torchvision's counts (`sum(p.numel() for p in m.parameters())`) and state-dict sizes. */
const TORCHVISION: Record<string, { params: number; keys: number }> = {
  resnet18: { params: 11_689_512, keys: 122 },
  resnet34: { params: 21_797_672, keys: 218 },
  resnet50: { params: 25_557_032, keys: 320 },
};

describe('registered variants equal torchvision', () => {
  it('resnet18, resnet34, resnet50 are registered', () => {
    expect(listModels('resnet*')).toEqual(['resnet18', 'resnet34', 'resnet50']);
  });

  for (const [name, tv] of Object.entries(TORCHVISION)) {
    it(`${name}: ${tv.params.toLocaleString('en-US')} parameters, ${tv.keys} state-dict entries, torchvision key names`, () => {
      const m = createModel(name) as ResNet;
      expect(m.numParams()).toBe(tv.params);
      const keys = keysOf(m);
      expect(keys).toHaveLength(tv.keys);
      expect(keys.slice(0, 6)).toEqual(['conv1.weight float32 [64, 3, 7, 7]', ...bn('bn1', 64)]);
      const features = name === 'resnet50' ? 2048 : 512;
      expect(keys.slice(-2)).toEqual([`fc.weight float32 [1000, ${features}]`, 'fc.bias float32 [1000]']);
      const basic = name !== 'resnet50';
      const layer2 = keys.filter((k) => k.startsWith('layer2.0.'));
      expect(layer2).toEqual(
        basic
          ? [
              'layer2.0.conv1.weight float32 [128, 64, 3, 3]',
              ...bn('layer2.0.bn1', 128),
              'layer2.0.conv2.weight float32 [128, 128, 3, 3]',
              ...bn('layer2.0.bn2', 128),
              'layer2.0.downsample.0.weight float32 [128, 64, 1, 1]',
              ...bn('layer2.0.downsample.1', 128),
            ]
          : [
              'layer2.0.conv1.weight float32 [128, 256, 1, 1]',
              ...bn('layer2.0.bn1', 128),
              'layer2.0.conv2.weight float32 [128, 128, 3, 3]',
              ...bn('layer2.0.bn2', 128),
              'layer2.0.conv3.weight float32 [512, 128, 1, 1]',
              ...bn('layer2.0.bn3', 512),
              'layer2.0.downsample.0.weight float32 [512, 256, 1, 1]',
              ...bn('layer2.0.downsample.1', 512),
            ],
      );
      // Only the first block of a stage has a projection shortcut; ResNet-18/34's layer1 has none, ResNet-50's has one.
      expect(keys.filter((k) => k.includes('downsample.0.weight')).map((k) => k.split('.')[0])).toEqual(basic ? ['layer2', 'layer3', 'layer4'] : ['layer1', 'layer2', 'layer3', 'layer4']);
    });
  }

  it('groups and width_per_group give ResNeXt-50 32×4d (torchvision: 25,028,904 parameters)', () => {
    const m = createModel('resnet', { groups: 32, width_per_group: 4 }) as ResNet;
    expect(m.numParams()).toBe(25_028_904);
    expect(m.stateDict().get('layer1.0.conv2.weight')!.shape).toEqual([128, 4, 3, 3]);
  });

  it('pretrained configs: torchvision V1 weights and evaluation transform', () => {
    for (const name of ['resnet18', 'resnet34', 'resnet50']) {
      const p = getVariant(name).pretrained;
      expect(p).toMatchObject({ inputSize: [3, 224, 224], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], interpolation: 'bilinear', cropPct: 0.875, numClasses: 1000 });
      expect(p.weights!.url).toMatch(new RegExp(`^https://download\\.pytorch\\.org/models/${name}-[0-9a-f]{8}\\.pth$`));
      expect(p.weights!.notes).toMatch(/IMAGENET1K_V1/);
    }
    expect(getVariant('resnet50').pretrained.weights!.top1).toBe(76.13);
  });
});

describe('small forwards', () => {
  const tiny = (over: Partial<ResNetConfig>) => createModel('resnet', { layers: [1, 1, 1, 1], num_classes: 10, ...over }, { seed: 3 }) as ResNet;

  /** Non-trivial BN statistics, so a swapped mean/var or a missing affine term shows. */
  function perturb(m: ResNet): ResNet {
    const rng = new Rng(5);
    for (const [, mod] of m.namedModules()) {
      if (!(mod instanceof BatchNorm2d)) continue;
      const draw = (f: () => number) => NDArray.float32([mod.numFeatures], Array.from({ length: mod.numFeatures }, f));
      mod.weight.data = draw(() => 1 + 0.3 * rng.normal());
      mod.bias.data = draw(() => 0.2 * rng.normal());
      mod.running_mean.data = draw(() => 0.2 * rng.normal());
      mod.running_var.data = draw(() => 0.5 + rng.uniform());
    }
    return m.nameParameters().eval();
  }

  for (const block of ['basic', 'bottleneck'] as const) {
    it(`${block} blocks: [2, 10] logits at 32×32, ONNX Runtime equals the reference interpreter`, async () => {
      const m = perturb(tiny({ block }));
      const x = f32(randn([2, 3, 32, 32], 7));
      const ort = (await runModule(m, x, { threads: 1, activations: ['layer4:out', 'fc:in.0'] }));
      expect(ort.output.shape).toEqual([2, 10]);
      expect(ort.output.toFloat64().every(Number.isFinite)).toBe(true);
      const features = block === 'basic' ? 512 : 2048;
      expect(ort.activations.get('layer4:out')!.shape).toEqual([2, features, 1, 1]);
      expect(ort.activations.get('fc:in.0')!.shape).toEqual([2, features]);
      const ref = await runModule(m, x, { backend: 'reference' });
      expectClose(ort.output.toFloat64(), ref.output.toFloat64(), 1e-5, 'ORT vs reference');
    });
  }

  it('non-square input: adaptive pooling accepts any size', async () => {
    const m = tiny({ block: 'basic' }).nameParameters().eval();
    expect((await runModule(m, f32(randn([1, 3, 40, 24], 8)), { threads: 1 })).output.shape).toEqual([1, 10]);
  });

  it('forwardHead(preLogits) and resetClassifier', async () => {
    const m = tiny({ block: 'basic' });
    m.resetClassifier(5, new Rng(1));
    expect(m.numClasses).toBe(5);
    expect(m.config.num_classes).toBe(5);
    expect(m.stateDict().get('fc.weight')!.shape).toEqual([5, 512]);
    m.nameParameters().eval();
    expect((await runModule(m, f32(randn([2, 3, 32, 32], 9)), { threads: 1 })).output.shape).toEqual([2, 5]);
    const pooled = trace((x) => m.forwardHead(m.forwardFeatures(x), true), [{ dtype: 'float32', shape: [2, 3, 32, 32] }]);
    expect(pooled.graph.outputs[0]!.shape).toEqual([2, 512]);
    m.resetClassifier(0, new Rng(1));
    expect(m.fc).toBeInstanceOf(Identity);
    expect(m.stateDict().has('fc.weight')).toBe(false);
  });

  it('zero_init_residual zeroes the last BN of every block', () => {
    for (const block of ['basic', 'bottleneck'] as const) {
      const m = tiny({ block, zero_init_residual: true });
      const last = block === 'basic' ? 'bn2' : 'bn3';
      for (const [k, v] of m.stateDict()) {
        if (/^layer\d\.\d+\.bn\d\.weight$/.test(k)) expect(v.toFloat64().every((x) => x === 0), k).toBe(k.endsWith(`${last}.weight`));
      }
    }
  });

  it('wrong input channels raise a ShapeError naming conv1', () => {
    const m = tiny({ block: 'basic' }).nameParameters().eval();
    const run = () => trace((x) => m.call(x), [{ dtype: 'float32', shape: [1, 1, 32, 32] }]);
    expect(run).toThrow(ShapeError);
    expect(run).toThrow(/module 'conv1'/);
  });

  it('bad configs raise a ConfigError', () => {
    expect(() => tiny({ layers: [1, 1, 1] })).toThrow(ConfigError);
    expect(() => tiny({ block: 'basic', groups: 2 })).toThrow(/BasicBlock only supports groups=1/);
    expect(() => tiny({ num_classes: -1 })).toThrow(ConfigError);
  });
});

/** Runs a model's head alone, on a feature map. */
class HeadOf extends Module {
  constructor(readonly model: ResNet) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.model.forwardHead(x);
  }
}

describe('numerics against an official PyTorch run', () => {
  // ACmix-ResNet (fixture acmix_resnet_micro) is torchvision's ResNet-50 with every bottleneck 3×3 swapped for ACmix:
  // its stem (conv 7×7/2, BN, ReLU, max-pool 3/2) and head (global average pool, fc) are torchvision's.
  it('stem output (maxpool:out) and head (fc on layer4:out) match the fixture', async () => {
    const f = loadFixture('acmix_resnet_micro');
    const m = createModel('resnet', { layers: [1, 1, 1, 1], num_classes: 10 }) as ResNet;
    const shared = new Map([...f.weights].filter(([k]) => /^(conv1|bn1|fc)\./.test(k)));
    expect(shared.size).toBe(8);
    m.nameParameters().eval().loadStateDict(shared, { strict: false });
    const { activations } = await runModule(m, f32(f.io.get('input')!), { threads: 1, activations: ['maxpool:out'] });
    expectClose(activations.get('maxpool:out')!.toFloat64(), f.activations.get('maxpool:out')!.toFloat64(), 1e-4, 'maxpool:out');
    const logits = (await runModule(new HeadOf(m), f.activations.get('layer4.0:out')!, { threads: 1 })).output;
    expectClose(logits.toFloat64(), f.io.get('logits')!.toFloat64(), 1e-4, 'logits from layer4:out');
  });
});
