/**
 * ACmix (LeapLabTHU/ACmix): parity of the operator, ACmix-ResNet and
 * ACmix-Swin with the official fixtures, the operator's gradients, the
 * banded-matmul local attention against the official Unfold formulation
 * (kept here only, as an oracle), the full-size key spaces, small forwards of
 * every block type, checkpoint filters and bad inputs.
 */
import { expectOfficialLayout } from '../helpers/official.js';
import { extractStateDict } from '../../src/io/torch.js';
import type { PickleValue } from '../../src/io/pickle.js';
import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { compile } from '../../src/backends/compile.js';
import { ShapeError } from '../../src/errors.js';
import type { Value } from '../../src/ir/graph.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { Conv2d, Sequential } from '../../src/nn/layers.js';
import type { Module } from '../../src/nn/module.js';
import { runModule } from '../../src/nn/run.js';
import {
  ACmix,
  type ACmixResNet,
  type SwinTransformerACmix,
  acmixSwinCheckpointFilter,
  createModel,
  getVariant,
  listModels,
  pretrainedConfig,
} from '../../src/models/index.js';
import { Rng } from '../../src/rng.js';
import { fromRef, interpret } from '../../src/backends/reference/interpreter.js';
import { paramValues, trace } from '../../src/tensor/function.js';
import { type Tensor, concat, constant, unfold } from '../../src/tensor/tensor.js';
import { type FixtureCase, loadFixture } from '../helpers/fixtures.js';
import { expectClose, maxAbs, maxAbsDiff, randn } from '../helpers/opcheck.js';
import { checkParity } from '../helpers/parity.js';

const RESNET_VARIANTS = ['acmix_resnet26', 'acmix_resnet38', 'acmix_resnet50'];
const SWIN_VARIANTS = ['acmix_swin_small', 'acmix_swin_tiny'];

interface OpKwargs {
  in_planes: number;
  out_planes: number;
  kernel_att: number;
  head: number;
  kernel_conv: number;
  stride: number;
}

const buildOp = (f: FixtureCase) => {
  const kw = f.manifest.kwargs as unknown as OpKwargs;
  return new ACmix(kw.in_planes, kw.out_planes, { ...kw, rng: new Rng(0) });
};

const input = (shape: number[], seed: number) => randn(shape, seed).astype('float32');

/** Non-trivial weights, so that channel-order or rate mistakes cannot hide behind the shift / 0.5 initialisation. */
function randomize(model: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const [key, p] of model.namedTensors()) {
    if (p.data.dtype !== 'float32') continue;
    const d = p.data.data as Float32Array;
    for (let i = 0; i < d.length; i++) d[i] = key.endsWith('running_var') ? 0.5 + rng.uniform() : rng.normal() * 0.4;
  }
}

/** [N, Ho, Wo, K] → [N, K, Ho, Wo]: our attention-weight layout to the official one. */
function channelsFirst(a: NDArray): NDArray {
  const [n, h, w, k] = a.shape as [number, number, number, number];
  const src = a.toFloat64();
  const out = NDArray.float64([n, k, h, w]);
  for (let b = 0; b < n; b++) for (let i = 0; i < h * w; i++) for (let c = 0; c < k; c++) out.data[(b * k + c) * h * w + i] = src[(b * h * w + i) * k + c]!;
  return out;
}

/** Tracing `model` on `shape` must throw a ShapeError whose message names `path`. */
function expectShapeError(model: Module, shape: number[], ...fragments: string[]): void {
  let error: unknown;
  try {
    trace((x) => model.call(x), [{ dtype: 'float32', shape }]);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ShapeError);
  for (const f of fragments) expect((error as Error).message).toContain(f);
}

describe('acmix: parity with the official fixtures', () => {
  it('acmix_op_stride1: the operator, its position grid, pe and conv path', async () => {
    await checkParity('acmix_op_stride1', buildOp, ['conv_p:in.0', 'conv_p:out', 'dep_conv:out']);
  });

  it('acmix_op_stride2: with the attention weights (ours [B·head, H/2, W/2, 49] = the official [B·head, 49, H/2, W/2] permuted)', async () => {
    const { fixture } = await checkParity('acmix_op_stride2', buildOp, ['conv_p:in.0', 'conv_p:out', 'dep_conv:out']);
    const model = buildOp(fixture).nameParameters();
    model.loadStateDict(fixture.weights);
    const { activations } = await runModule(model, fixture.io.get('input')!.astype('float32'), { activations: ['softmax:out'] });
    const ref = fixture.activations.get('softmax:out')!;
    expectClose(channelsFirst(activations.get('softmax:out')!).toFloat64(), ref.toFloat64(), 1e-4, 'softmax:out');
    expect(channelsFirst(activations.get('softmax:out')!).shape).toEqual(ref.shape);
  });

  it('acmix_resnet_micro', async () => {
    await checkParity('acmix_resnet_micro', (f) => createModel('acmix_resnet', f.manifest.kwargs), ['maxpool:out', 'layer3.0.conv2:out', 'layer4.0.downsample:out', 'layer4.0:out', 'fc:in.0']);
  });

  it('acmix_swin_micro (the shifted block’s attention sees the rolled map)', async () => {
    await checkParity('acmix_swin_micro', (f) => createModel('acmix_swin', f.manifest.kwargs), [
      'patch_embed:out',
      'layers.2.blocks.1.attn:in.0',
      'layers.2.blocks.1.attn:out',
      'layers.2.downsample:out',
      'layers.3.blocks.0:out',
      'norm:out',
      'head:in.0',
    ]);
  });

  it('acmix_swin_micro: builds the attn_mask and relative_position_index buffers the official code stores', () => {
    const f = loadFixture('acmix_swin_micro');
    const built = createModel('acmix_swin', f.manifest.kwargs).stateDict();
    const recomputed = [...f.weights.keys()].filter((k) => /(attn_mask|relative_position_index)$/.test(k));
    expect(recomputed.filter((k) => k.endsWith('attn_mask'))).toEqual(['layers.0.blocks.1.attn_mask', 'layers.1.blocks.1.attn_mask', 'layers.2.blocks.1.attn_mask']);
    for (const key of recomputed) {
      const [a, b] = [built.get(key)!, f.weights.get(key)!];
      expect(a.dtype, key).toBe(b.dtype);
      expect(a.shape, key).toEqual(b.shape);
      expect(Array.from(a.toFloat64()), key).toEqual(Array.from(b.toFloat64()));
    }
  });

  for (const name of ['acmix_op_stride1', 'acmix_op_stride2']) {
    it(`${name}: gradients of every parameter and the input (the fixture's rule)`, async () => {
      const f = loadFixture(name);
      const meta = f.manifest.grads!;
      const fp64 = new Map(meta.tensors.map((t) => [t.name, t.fp64_abs ?? 0]));
      const model = buildOp(f).nameParameters();
      model.loadStateDict(f.weights);
      const params = model.namedParameters();
      const cotangent = f.grads!.get('cotangent')!;
      const step = compile((x: Tensor) => {
        const loss = model.call(x).mul(constant(cotangent)).sum();
        return [loss, ...grad(loss, [...params.map(([, p]) => p), x])];
      });
      const [loss, ...grads] = await step(f.io.get('input')!.astype('float32'));
      const names = ['loss', ...params.map(([k]) => `grad.${k}`), 'grad_input'];
      const got = [loss!, ...grads];
      const failures = names.flatMap((n, i) => {
        const ref = f.grads!.get(n)!.toFloat64();
        const d = maxAbsDiff(got[i]!.toFloat64(), ref);
        const bound = 1e-4 * maxAbs(ref) + 100 * fp64.get(n)!;
        return d <= bound ? [] : [`${n}: max|Δ| ${d.toExponential(2)} > ${bound.toExponential(2)}`];
      });
      expect(failures).toEqual([]);
      await step.release();
    });
  }
});

// ------------------------------------------------------------ the Unfold oracle

/** torch.linspace(−1, 1, n), written independently of the model's grid. */
const linspace = (n: number) => Array.from({ length: n }, (_, i) => (n === 1 ? -1 : -1 + (2 * i) / (n - 1)));

/**
 * The official ACmix forward, transcribed literally: Unfold over the
 * reflection-padded k, v and pe (a k²-fold copy of each), logits
 * q·(k_n + pe_q − pe_n), softmax over the k² neighbours. Returns the output
 * and the attention weights [B·head, k², Ho, Wo].
 */
function unfoldOracle(m: ACmix, x: Tensor): Tensor[] {
  const [b, , h, w] = x.shape as [number, number, number, number];
  const { head, headDim: hd, stride: s, kernelAtt: ka } = m;
  const [ho, wo] = [h / s, w / s];
  const pad = (ka - 1) / 2;
  const q = m.conv1.forward(x);
  const k = m.conv2.forward(x);
  const v = m.conv3.forward(x);
  const grid = NDArray.float32([1, 2, h, w], [...Array.from({ length: h }, () => linspace(w)).flat(), ...linspace(h).flatMap((y) => Array<number>(w).fill(y))]);
  const pe = m.conv_p.forward(constant(grid));
  const subsample = (t: Tensor) => (s > 1 ? t.slice(2, 0, h, s).slice(3, 0, w, s) : t);
  const qAtt = subsample(q.reshape(b * head, hd, h, w).mul(hd ** -0.5));
  const qPe = subsample(pe);
  const unfolded = (t: Tensor) => unfold(t.pad([pad, pad, pad, pad], 'reflect'), ka, { stride: s }).reshape(t.dim(0), hd, ka * ka, ho, wo);
  const att = qAtt.unsqueeze(2).mul(unfolded(k.reshape(b * head, hd, h, w)).add(qPe.unsqueeze(2)).sub(unfolded(pe))).sum(1).softmax(1);
  const outAtt = att.unsqueeze(1).mul(unfolded(v.reshape(b * head, hd, h, w))).sum(2).reshape(b, m.outPlanes, ho, wo);
  const fAll = m.fc.forward(concat([q, k, v].map((t) => t.reshape(b, head, hd, h * w)), 1));
  const conv = m.dep_conv.forward(fAll.permute(0, 2, 1, 3).reshape(b, -1, h, w));
  return [m.rate1.mul(outAtt).add(m.rate2.mul(conv)), att];
}

describe('acmix: banded local attention equals the Unfold formulation', () => {
  const cases = [
    { what: 'stride 1, non-square, batch 2', batch: 2, cin: 8, cout: 16, head: 4, h: 9, w: 7, stride: 1, kernel_att: 7 },
    { what: 'stride 2, non-square', batch: 1, cin: 6, cout: 16, head: 4, h: 10, w: 6, stride: 2, kernel_att: 7 },
    { what: 'the smallest map (4×4, reflection reaches the far edge), stride 2', batch: 3, cin: 4, cout: 8, head: 2, h: 4, w: 4, stride: 2, kernel_att: 7 },
    { what: '5×5 window, 2 heads', batch: 2, cin: 8, cout: 8, head: 2, h: 6, w: 5, stride: 1, kernel_att: 5 },
  ];
  for (const c of cases) {
    it(c.what, async () => {
      const m = new ACmix(c.cin, c.cout, { rng: new Rng(1), head: c.head, stride: c.stride, kernel_att: c.kernel_att }).nameParameters();
      randomize(m, 7);
      const x = input([c.batch, c.cin, c.h, c.w], 3);
      for (const backend of ['reference', 'ort'] as const) {
        const fast = await runModule(m, x, { backend, activations: ['softmax:out'] });
        const oracle = compile((t: Tensor) => unfoldOracle(m, t), { backend });
        const [out, weights] = await oracle(x);
        // In float64 (reference) they differ only by summation order, the dropped q·pe_q term and the
        // last float32 bit of the two position grids (torch's linspace formula vs the plain one above).
        const rtol = backend === 'reference' ? 1e-7 : 1e-5;
        expect(fast.output.shape).toEqual([c.batch, c.cout, c.h / c.stride, c.w / c.stride]);
        expectClose(fast.output.toFloat64(), out!.toFloat64(), rtol, `${backend}: output`);
        const fastWeights = channelsFirst(fast.activations.get('softmax:out')!);
        expect(fastWeights.shape).toEqual([c.batch * c.head, c.kernel_att ** 2, c.h / c.stride, c.w / c.stride]);
        expectClose(fastWeights.toFloat64(), weights!.toFloat64(), rtol, `${backend}: attention weights`);
        await oracle.release();
      }
    });
  }

  it('never materialises a k²-fold copy of the keys or values', () => {
    const m = new ACmix(64, 64, { rng: new Rng(0) }).nameParameters();
    const { graph } = trace((x) => m.call(x), [{ dtype: 'float32', shape: [2, 64, 28, 28] }]);
    const largest = Math.max(...graph.nodes.flatMap((n) => n.outputs.map((o) => o.shape.reduce((a, d) => a * d, 1))));
    expect(graph.nodes.some((n) => n.op === 'unfold')).toBe(false);
    // The largest tensors are the logits [B·head, H, W, 49] (49/hd maps, as in the official code) and one row-offset
    // product [B·head, H, W + 7, W + 6] (stride 1); the official unfolded keys and values are 49 maps each.
    const map = 2 * 64 * 28 * 28;
    expect(largest).toBe(Math.max(2 * 4 * 28 * 28 * 49, 2 * 4 * 28 * 35 * 34));
    expect(largest / map).toBeLessThan(49 / 16 + 0.01);
  });
});

// ------------------------------------------------------------ registry and full-size variants

describe('acmix: registry and full-size variants', () => {
  it('registers ResNet-26/38/50 (no weights, bilinear 256 → 224) and Swin-T/S (Tsinghua Cloud weights, bicubic)', () => {
    expect(listModels('acmix_resnet*')).toEqual(RESNET_VARIANTS);
    expect(listModels('acmix_swin*')).toEqual(SWIN_VARIANTS);
    for (const name of RESNET_VARIANTS) {
      const p = pretrainedConfig(name);
      expect(p.weights).toBeUndefined();
      expect([p.interpolation, p.cropPct, p.inputSize]).toEqual(['bilinear', 224 / 256, [3, 224, 224]]);
    }
    expect(pretrainedConfig('acmix_resnet50').paperTop1).toBe(77.8);
    for (const name of SWIN_VARIANTS) {
      const p = pretrainedConfig(name);
      expect([p.interpolation, p.cropPct, p.numClasses]).toEqual(['bicubic', 224 / 256, 1000]);
      expect(p.weights?.url).toMatch(/^https:\/\/cloud\.tsinghua\.edu\.cn\/f\/[0-9a-f]+\/$/);
    }
    expect(pretrainedConfig('acmix_swin_tiny').weights?.top1).toBe(81.9);
    expect(pretrainedConfig('acmix_swin_small').weights?.top1).toBe(83.5);
    expect(getVariant('acmix_swin_small').config).toEqual({ embed_dim: 96, depths: [2, 2, 18, 2], num_heads: [3, 6, 12, 24], window_size: 7, drop_path_rate: 0.3 });
    expect(getVariant('acmix_resnet38').config).toEqual({ layers: [2, 3, 5, 2] });
  });

  for (const name of [...RESNET_VARIANTS, ...SWIN_VARIANTS]) {
    it(`${name}: parameter count and state-dict keys, dtypes and shapes`, () => expectOfficialLayout(name));
  }
});

// ------------------------------------------------------------ small forwards of every block type

describe('acmix: small forwards', () => {
  const finite = (a: NDArray) => Array.from(a.toFloat64()).every(Number.isFinite);

  it('ACmix as a drop-in 3×3 conv (stride 1 and 2) inside another network', async () => {
    const rng = new Rng(0);
    const net = new Sequential(new Conv2d(3, 8, 3, { rng, padding: 1 }), new ACmix(8, 16, { rng, stride: 2 }), new ACmix(16, 16, { rng })).nameParameters();
    const { output, activations } = await runModule(net, input([2, 3, 16, 12], 1), { activations: ['1.softmax:out'] });
    expect(output.shape).toEqual([2, 16, 8, 6]);
    expect(activations.get('1.softmax:out')!.shape).toEqual([8, 8, 6, 49]);
    expect(finite(output)).toBe(true);
  });

  it('ACmix-ResNet: bottlenecks with and without downsample, narrow widths', async () => {
    const model = createModel('acmix_resnet', { layers: [2, 1, 1, 1], width_per_group: 16, num_classes: 5 }).eval();
    randomize(model, 2);
    const { output, activations } = await runModule(model, input([2, 3, 64, 64], 2), { activations: ['layer1.1:out', 'layer4.0:out'] });
    expect(output.shape).toEqual([2, 5]);
    expect(activations.get('layer1.1:out')!.shape).toEqual([2, 256, 16, 16]);
    expect(activations.get('layer4.0:out')!.shape).toEqual([2, 2048, 2, 2]);
    expect(finite(output)).toBe(true);
  });

  it('ACmix-Swin: shifted and unshifted blocks, a one-window stage, PatchMerging, ape, no head', async () => {
    const model = createModel('acmix_swin', { img_size: 32, embed_dim: 8, depths: [2, 2], num_heads: [1, 2], window_size: 4, ape: true, num_classes: 0 }) as SwinTransformerACmix;
    randomize(model, 3);
    expect(model.layers[0]!.blocks[1]!.attn_mask!.data.shape).toEqual([4, 16, 16]);
    // Stage 2 runs at 4×4 = one window: unshifted, no mask.
    expect(model.layers[1]!.blocks[1]!.attn_mask).toBeUndefined();
    const { output } = await runModule(model, input([2, 3, 32, 32], 4));
    expect(output.shape).toEqual([2, 16]);
    expect(finite(output)).toBe(true);
  });

  it('ACmix-Swin: masked attention weights are exact zeros, not e^−100 denormals (the buffer keeps −100)', () => {
    const model = createModel('acmix_swin', { img_size: 32, embed_dim: 8, depths: [2, 2], num_heads: [1, 2], window_size: 4, num_classes: 0 }) as SwinTransformerACmix;
    model.eval();
    const t = trace((x) => model.call(x), [{ dtype: 'float32', shape: [1, 3, 32, 32], name: 'input' }]);
    const softmax = t.graph.liveNodes().find((n) => n.op === 'softmax' && n.scope.startsWith('layers.0.blocks.1.'))!;
    const feeds = new Map<Value, NDArray>(paramValues(t));
    feeds.set(t.graph.inputs.find((v) => v.role === 'input')!, input([1, 3, 32, 32], 5));
    // The float64 reference: e^−100 would be a normal, non-zero weight there.
    const weights = fromRef(interpret(t.graph, feeds, [softmax.outputs[0]!])[0]!, 'float64');
    const mask = model.layers[0]!.blocks[1]!.attn_mask!.data; // [windows, 16, 16]; one image, one head
    expect(weights.shape).toEqual([4, 1, 16, 16]);
    expect(new Set(Array.from(mask.toFloat64()))).toEqual(new Set([0, -100]));
    for (let i = 0; i < mask.size; i++) {
      if (mask.get(i) === -100) expect(weights.get(i)).toBe(0);
      else expect(weights.get(i)).toBeGreaterThan(1e-6);
    }
  });

  it('resetClassifier replaces the head', async () => {
    const model = createModel('acmix_swin', { img_size: 32, embed_dim: 8, depths: [1, 1], num_heads: [1, 2], window_size: 4, num_classes: 3 });
    model.resetClassifier(7, new Rng(1));
    model.nameParameters();
    const { output } = await runModule(model, input([1, 3, 32, 32], 5));
    expect([model.numClasses, ...output.shape]).toEqual([7, 1, 7]);
  });
});

// ------------------------------------------------------------ checkpoint filters

describe('acmix: checkpoint filters', () => {
  it('ResNet: the loader strips the `module.` prefix of ResNet/main.py’s DDP checkpoints', () => {
    const model = createModel('acmix_resnet', { layers: [1, 1, 1, 1], num_classes: 10 }) as ACmixResNet;
    const ddp = new Map<string, PickleValue>([...model.stateDict()].map(([k, v]) => [`module.${k}`, v]));
    const report = model.loadStateDict(extractStateDict(new Map<string, PickleValue>([['state_dict', ddp]])).tensors);
    expect(report).toEqual({ missing: [], unexpected: [], mismatched: [] });
  });

  it('Swin: replaces the recomputed buffers with the model’s own and loads every other key strictly', () => {
    const f = loadFixture('acmix_swin_micro');
    const model = createModel('acmix_swin', f.manifest.kwargs);
    const withoutBuffers = new Map([...f.weights].filter(([k]) => !/attn_mask|relative_position_index/.test(k)));
    const filtered = acmixSwinCheckpointFilter(withoutBuffers, model);
    expect(model.loadStateDict(filtered)).toEqual({ missing: [], unexpected: [], mismatched: [] });
    // the recomputed buffers equal the official ones
    for (const [k, v] of f.weights) if (/attn_mask|relative_position_index/.test(k)) expect(Array.from(filtered.get(k)!.toFloat64())).toEqual(Array.from(v.toFloat64()));
    filtered.delete('head.bias');
    expect(() => model.loadStateDict(filtered)).toThrow(/missing keys: head\.bias/);
  });
});

// ------------------------------------------------------------ bad input

describe('acmix: bad input', () => {
  const resnet = () => createModel('acmix_resnet', { layers: [1, 1, 1, 1], num_classes: 10 });
  const swin = () => createModel('acmix_swin', { img_size: 32, embed_dim: 8, depths: [2, 2], num_heads: [1, 2], window_size: 4 });

  it('ResNet: wrong input channels name the stem conv', () => {
    expectShapeError(resnet(), [1, 4, 64, 64], "module 'conv1'");
  });

  it('ResNet: an image too small for the 7×7 reflection-padded attention names the ACmix', () => {
    expectShapeError(resnet(), [1, 3, 32, 32], 'layer4.0.conv2', '2×2');
  });

  it('ACmix stride 2 on odd sides', () => {
    expectShapeError(new ACmix(8, 8, { rng: new Rng(0), stride: 2 }).nameParameters(), [1, 8, 9, 8], 'stride 2', '9×8');
  });

  it('Swin: wrong image size and wrong channels name the patch embedding', () => {
    expectShapeError(swin(), [1, 3, 64, 64], 'patch_embed', '32×32');
    expectShapeError(swin(), [1, 4, 32, 32], "module 'patch_embed.proj'");
  });

  it('config errors: kernel_conv, dilation, an img_size that does not tile into windows', () => {
    expect(() => new ACmix(8, 8, { rng: new Rng(0), kernel_conv: 5 })).toThrow(/kernel_conv must be 3/);
    expect(() => new ACmix(8, 8, { rng: new Rng(0), dilation: 2 })).toThrow(/dilation must be 1/);
    expect(() => createModel('acmix_swin', { img_size: 200 })).toThrow(/not a multiple of the window/);
  });
});
