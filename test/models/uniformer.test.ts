/**
 * UniFormer (Sense-X/UniFormer): parity with the official fixtures
 * (`uniformer_micro`, `uniformer_micro_convstem`: every recorded activation
 * and one train-mode step), the full-size key spaces, UniFormer-Light's token
 * pruning against reference logits, the TL head, layer scale, the
 * checkpoint filter (official wrapper, PaddleClas copies) and bad inputs.
 */
import { expectOfficialLayout } from '../helpers/official.js';
import { StateDictError } from '../../src/errors.js';
import { extractStateDict } from '../../src/io/torch.js';
import type { PickleValue } from '../../src/io/pickle.js';
import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { compile } from '../../src/backends/compile.js';
import { ConfigError, ShapeError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import type { Module } from '../../src/nn/module.js';
import { runModule } from '../../src/nn/run.js';
import {
  type UniFormer,
  type UniFormerConfig,
  type UniFormerLight,
  type UniFormerLightConfig,
  createModel,
  getVariant,
  listModels,
  pretrainedConfig,
  uniformerCheckpointFilter,
} from '../../src/models/index.js';
import { Rng } from '../../src/rng.js';
import { trace } from '../../src/tensor/function.js';
import { type Tensor, constant, oneHot } from '../../src/tensor/tensor.js';
import { type FixtureCase, loadFixture } from '../helpers/fixtures.js';
import { maxAbs, maxAbsDiff, randn } from '../helpers/opcheck.js';
import { checkParity } from '../helpers/parity.js';

const CASES = ['uniformer_micro', 'uniformer_micro_convstem'] as const;
const FULL_SIZE = ['uniformer_small', 'uniformer_small_plus', 'uniformer_base', 'uniformer_xxs', 'uniformer_xs'];

/** Every key the fixture records: its stored activations and the aliased ones (inputs, `norm:in.0`, `head:out`). */
function recordedKeys(f: FixtureCase): string[] {
  return [...f.activations.keys(), ...Object.keys((f.manifest.activation_aliases ?? {}) as object)].sort();
}

const microConfig = (name: (typeof CASES)[number] = 'uniformer_micro') => loadFixture(name).manifest.kwargs as unknown as Partial<UniFormerConfig>;
const build = (overrides: Partial<UniFormerConfig>) => createModel('uniformer', overrides) as UniFormer;
const finite = (a: NDArray) => Array.from(a.toFloat64()).every(Number.isFinite);
const relErr = (got: NDArray, ref: ArrayLike<number>) => maxAbsDiff(got.toFloat64(), ref) / maxAbs(ref);

/** A Light model small enough to run in a test: stage 3 prunes in blocks 1–2 and pools its scores; stage 4 prunes in both blocks. */
const LIGHT_MICRO: Partial<UniFormerLightConfig> = {
  depth: [1, 1, 3, 2],
  embed_dim: [16, 32, 64, 128],
  head_dim: 16,
  mlp_ratio: [3, 3, 3, 3],
  conv_stem: true,
  prune_ratio: [[], [], [1, 0.5, 0.5], [0.5, 0.5]],
  trade_off: [[], [], [1, 0.5, 0.5], [0.5, 0.5]],
  num_classes: 5,
};
const buildLight = (overrides: Partial<UniFormerLightConfig> = {}) => createModel('uniformer_light', { ...LIGHT_MICRO, ...overrides }) as UniFormerLight;

/**
 * The test's own generator (splitmix32, Box–Muller), so that the reference
 * logits below depend neither on the library's Rng nor on its initialisers.
 */
function testRandom(seed: number): { uniform: () => number; normal: () => number } {
  let s = seed >>> 0;
  const u32 = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  const uniform = () => (u32() + 0.5) / 2 ** 32;
  return { uniform, normal: () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()) };
}

/**
 * Deterministic, non-trivial weights: conv/linear weights N(0, 1/fan_in),
 * BN variances U(0.5, 1.5), norm weights and gammas 1 + 0.1·N, everything
 * else (biases, BN means, the class token) 0.1·N.
 */
function fillWeights(model: Module, seed: number): void {
  const rng = testRandom(seed);
  for (const [key, p] of model.namedTensors()) {
    if (p.data.dtype !== 'float32') continue;
    const d = p.data.data as Float32Array;
    const shape = p.data.shape;
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    for (let i = 0; i < d.length; i++) {
      if (key.endsWith('running_var')) d[i] = 0.5 + rng.uniform();
      else if (key.endsWith('.weight') && shape.length >= 2) d[i] = rng.normal() / Math.sqrt(fanIn);
      else d[i] = (key.endsWith('.weight') || /gamma_\d$/.test(key) ? 1 : 0) + 0.1 * rng.normal();
    }
  }
}

function normalInput(shape: number[], seed: number): NDArray {
  const rng = testRandom(seed);
  return NDArray.float32(shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()));
}

// ------------------------------------------------------------------ parity

describe('uniformer: parity with the official code', () => {
  for (const name of CASES) {
    it(`${name}: logits and every recorded activation`, async () => {
      const f = loadFixture(name);
      const keys = recordedKeys(f);
      expect(keys).toEqual(
        expect.arrayContaining(['patch_embed1:out', 'patch_embed4:out', 'blocks1.0:out', 'blocks3.0.attn:in.0', 'blocks3.0.attn:out', 'blocks4.0:out', 'norm:out', 'head:in.0']),
      );
      await checkParity(name, (c) => createModel('uniformer', c.manifest.kwargs), keys);
    });

    it(`${name}: one train-mode step — loss, logits, every gradient and the BatchNorm statistics (the fixture rule)`, async () => {
      const f = loadFixture(name);
      const fp64 = new Map(f.manifest.grads!.tensors.map((t) => [t.name, t.fp64_abs ?? 0]));
      const model = createModel('uniformer', f.manifest.kwargs);
      model.loadStateDict(f.weights);
      model.train();
      const params = model.namedParameters();
      const step = compile((x: Tensor) => {
        const logits = model.call(x);
        const loss = logits.logSoftmax(-1).mul(oneHot(constant(f.grads!.get('target')!), logits.dim(1))).sum(-1).mean().neg();
        return [loss, logits, ...grad(loss, params.map(([, p]) => p))];
      });
      const got = await step(f.io.get('input')!.astype('float32'));
      await step.release();
      const bnAfter = model.namedBuffers().filter(([k]) => !k.endsWith('num_batches_tracked'));
      const names = ['loss', 'logits_train', ...params.map(([k]) => `grad.${k}`), ...bnAfter.map(([k]) => `bn_after.${k}`)];
      const values = [...got, ...bnAfter.map(([, p]) => p.data)];
      const failures = names.flatMap((n, i) => {
        const ref = f.grads!.get(n)!.toFloat64();
        const d = maxAbsDiff(values[i]!.toFloat64(), ref);
        const bound = 1e-4 * maxAbs(ref) + 100 * fp64.get(n)!;
        return d <= bound ? [] : [`${n}: max|Δ| ${d.toExponential(2)} > ${bound.toExponential(2)}`];
      });
      expect(failures).toEqual([]);
      for (const [k, p] of model.namedBuffers().filter(([key]) => key.endsWith('num_batches_tracked'))) expect(Number(p.data.data[0]), k).toBe(1);
    });
  }
});

// ------------------------------------------------------------------ UniFormer-Light

describe('uniformer_light: token pruning', () => {
  /**
   * Reference logits [2, 5] for LIGHT_MICRO with fillWeights(7) and
   * normalInput(8), computed in float64 by a line-by-line NumPy
   * transcription of the official uniformer_light.py (eval: argsort,
   * easy_gather, merge_tokens, the in-place score update, the fast update,
   * the 2×2 score pooling). The smallest score gap at a keep/drop boundary
   * is 9e-5 (scores ≈ 0.06), far above float32 noise, so the kept sets are
   * unambiguous.
   */
  const GOLDEN = {
    plain64: [1.4505557, -0.6117747, -5.6217745, -1.1242974, -0.711295, -0.7197335, -0.2058895, -4.8883734, -1.1376232, -1.265758],
    layerScale96: [-1.3884382, 0.2529128, -0.9864033, -2.0431097, 3.0152907, -1.0753553, 1.1868923, 0.5553894, -0.3581183, 2.8015736],
  };

  it('64×64 (stage 3: 16 tokens → 8 kept; stage 4: 4 → 2) matches the reference logits', async () => {
    const model = buildLight();
    fillWeights(model, 7);
    const { output } = await runModule(model, normalInput([2, 3, 64, 64], 8));
    expect(output.shape).toEqual([2, 5]);
    expect(relErr(output, GOLDEN.plain64)).toBeLessThan(1e-4);
  });

  it('96×96 with layer scale (gamma_3 on the fast update; 36 → 18 and 9 → 4 tokens) matches the reference logits', async () => {
    const model = buildLight({ layer_scale: true });
    fillWeights(model, 7);
    expect(model.blocks3[1]!.gamma_3?.data.shape).toEqual([64]);
    expect(model.blocks3[0]!.gamma_3).toBeUndefined();
    const { output } = await runModule(model, normalInput([2, 3, 96, 96], 8));
    expect(relErr(output, GOLDEN.layerScale96)).toBeLessThan(1e-4);
  });

  it('records each EvoSABlock and its attention under the official paths', async () => {
    const model = buildLight();
    const keys = ['blocks3.0:in.0', 'blocks3.2:out', 'blocks4.1:out', 'blocks3.1.attn:in.0', 'blocks3.1.attn:out', 'cls_upsample:out'];
    const { activations } = await runModule(model, normalInput([1, 3, 64, 64], 1), { activations: keys });
    expect(activations.get('blocks3.2:out')!.shape).toEqual([1, 64, 4, 4]);
    // [cls; 8 kept; merged] in the pruned block.
    expect(activations.get('blocks3.1.attn:out')!.shape).toEqual([1, 10, 64]);
    expect(activations.get('cls_upsample:out')!.shape).toEqual([1, 1, 128]);
  });

  it('the training pair (head, head_cls on the class token) and a train-mode backward through the pruning', async () => {
    const model = buildLight();
    fillWeights(model, 3);
    model.train();
    const params = model.namedParameters();
    const step = compile((x: Tensor) => {
      const [logits, clsLogits] = model.forwardWithClassToken(x);
      const target = oneHot(constant(NDArray.int64([2], [1, 3])), 5);
      const ce = (l: Tensor) => l.logSoftmax(-1).mul(target).sum(-1).mean().neg();
      const loss = ce(logits).mul(0.5).add(ce(clsLogits).mul(0.5));
      return [loss, clsLogits, ...grad(loss, params.map(([, p]) => p))];
    });
    const [loss, clsLogits, ...grads] = await step(normalInput([2, 3, 64, 64], 4));
    await step.release();
    expect(clsLogits!.shape).toEqual([2, 5]);
    expect(Number.isFinite(loss!.get(0))).toBe(true);
    expect(grads.every(finite)).toBe(true);
    const g = new Map(params.map(([k], i) => [k, maxAbs(grads[i]!.toFloat64())]));
    for (const k of ['cls_token', 'cls_upsample.weight', 'norm_cls.weight', 'head_cls.weight', 'blocks3.1.attn.qkv.weight', 'blocks4.1.mlp.fc2.weight']) expect(g.get(k), k).toBeGreaterThan(0);
  });
});

// ------------------------------------------------------------------ registry

describe('uniformer: registry and full-size variants', () => {
  it('registers every published variant with its evaluation transform', () => {
    expect(listModels('uniformer*')).toEqual([
      'uniformer_base',
      'uniformer_base_dim64_tl',
      'uniformer_base_ls',
      'uniformer_base_tl',
      'uniformer_base_tl_384',
      'uniformer_large_ls',
      'uniformer_large_ls_384',
      'uniformer_small',
      'uniformer_small_dim64_tl',
      'uniformer_small_plus',
      'uniformer_small_plus_dim64',
      'uniformer_small_plus_dim64_tl',
      'uniformer_small_plus_tl',
      'uniformer_small_plus_tl_384',
      'uniformer_small_tl',
      'uniformer_small_tl_384',
      'uniformer_xs',
      'uniformer_xs_192',
      'uniformer_xxs',
      'uniformer_xxs_128',
      'uniformer_xxs_160',
      'uniformer_xxs_192',
    ]);
    for (const name of listModels('uniformer*')) {
      const p = pretrainedConfig(name);
      const size = Number(/_(\d+)$/.exec(name)?.[1] ?? 224);
      const tl = getVariant(name).family === 'uniformer' && (getVariant(name).config as Partial<UniFormerConfig>).return_dense === true;
      expect(p.inputSize, name).toEqual([3, size, size]);
      expect([p.interpolation, p.numClasses, p.cropPct], name).toEqual(['bicubic', 1000, tl ? 0.9 : 0.875]);
      expect(p.mean, name).toEqual(tl ? [0.5, 0.5, 0.5] : [0.485, 0.456, 0.406]);
      expect(p.weights?.url, name).toMatch(/^https:\/\/drive\.google\.com\/file\/d\/[\w-]+\/view$/);
      expect(p.weights?.top1, name).toBe(p.paperTop1);
    }
    expect(Math.floor(384 / pretrainedConfig('uniformer_base_tl_384').cropPct)).toBe(426);
    expect([pretrainedConfig('uniformer_base').paperTop1, pretrainedConfig('uniformer_base_ls').paperTop1, pretrainedConfig('uniformer_large_ls_384').paperTop1]).toEqual([83.8, 83.9, 86.3]);
    expect(pretrainedConfig('uniformer_small_plus').weights?.notes).toMatch(/UniFormer_small_plus_pretrained\.pdparams/);
  });

  it('head_dim follows the checkpoint tables: 32 for S† and the TL/384 S, S†, B; 64 for the rest', () => {
    const headDim = (name: string) => (getVariant(name).config as Partial<UniFormerConfig>).head_dim;
    for (const name of ['uniformer_small_plus', 'uniformer_small_tl', 'uniformer_small_plus_tl', 'uniformer_base_tl', 'uniformer_small_tl_384', 'uniformer_small_plus_tl_384', 'uniformer_base_tl_384']) expect(headDim(name), name).toBe(32);
    for (const name of ['uniformer_small', 'uniformer_small_plus_dim64', 'uniformer_base', 'uniformer_base_ls', 'uniformer_small_dim64_tl', 'uniformer_small_plus_dim64_tl', 'uniformer_base_dim64_tl', 'uniformer_large_ls', 'uniformer_large_ls_384']) expect(headDim(name), name).toBe(64);
    const { head_dim: _a, ...plus } = getVariant('uniformer_small_plus').config as Partial<UniFormerConfig>;
    const { head_dim: _b, ...plus64 } = getVariant('uniformer_small_plus_dim64').config as Partial<UniFormerConfig>;
    expect(plus).toEqual(plus64);
  });

  for (const name of FULL_SIZE) {
    it(`${name}: parameter count and state-dict keys, dtypes and shapes`, () => expectOfficialLayout(name));
  }

  it('uniformer_small_tl: 22,058,256 parameters (spec §1.2: S plus aux_head), aux_head after head', () => {
    const model = createModel('uniformer_small_tl');
    expect(model.numParams()).toBe(22_058_256);
    expect(model.namedTensors().slice(-4).map(([k]) => k)).toEqual(['head.weight', 'head.bias', 'aux_head.weight', 'aux_head.bias']);
  });
});

// ------------------------------------------------------------------ blocks and heads

describe('uniformer: layer scale, token-labelling head, small forwards', () => {
  it("layer_scale 'sablocks' puts gamma_1/2 [C] in stages 3–4 only; 'all' adds [1, C, 1, 1] in the CBlocks", () => {
    const keys = (ls: UniFormerConfig['layer_scale']) => build({ ...microConfig(), layer_scale: ls }).namedTensors().filter(([k]) => k.includes('gamma'));
    const shapes = (ls: UniFormerConfig['layer_scale']) => Object.fromEntries(keys(ls).map(([k, p]) => [k, p.data.shape]));
    expect(keys('none')).toEqual([]);
    expect(shapes('sablocks')).toEqual({
      'blocks3.0.gamma_1': [64], 'blocks3.0.gamma_2': [64], 'blocks3.1.gamma_1': [64], 'blocks3.1.gamma_2': [64], 'blocks4.0.gamma_1': [128], 'blocks4.0.gamma_2': [128],
    });
    const all = shapes('all');
    expect(Object.keys(all)).toHaveLength(10);
    expect(all['blocks1.0.gamma_1']).toEqual([1, 16, 1, 1]);
    // Own parameters come first in a block's keys, as in PyTorch.
    expect(build({ ...microConfig(), layer_scale: 'all' }).namedTensors().map(([k]) => k).filter((k) => k.startsWith('blocks2.0.')).slice(0, 3)).toEqual(['blocks2.0.gamma_1', 'blocks2.0.gamma_2', 'blocks2.0.pos_embed.weight']);
    // B-LS: B plus 2·(20·320 + 7·512) gamma elements = 49,796,520 (spec §1.2).
    expect(2 * (20 * 320 + 7 * 512)).toBe(49_796_520 - 49_776_552);
  });

  it('gammas scale the residual branches: all gammas 1 reproduce the fixture logits exactly', async () => {
    const f = loadFixture('uniformer_micro');
    const model = build({ ...microConfig(), layer_scale: 'all', init_value: 1 });
    model.loadStateDict(new Map([...f.weights, ...model.namedTensors().filter(([k]) => k.includes('gamma')).map(([k, p]) => [k, p.data] as const)]));
    const { output } = await runModule(model, f.io.get('input')!.astype('float32'));
    expect(relErr(output, f.io.get('logits')!.toFloat64())).toBeLessThan(1e-4);
    for (const [, p] of model.namedTensors().filter(([k]) => k.includes('gamma'))) (p.data.data as Float32Array).fill(0.5);
    const { output: halved } = await runModule(model, f.io.get('input')!.astype('float32'));
    expect(relErr(halved, f.io.get('logits')!.toFloat64())).toBeGreaterThan(1e-2);
  });

  it('token labelling: logits = head(mean) + 0.5 · max over tokens of aux_head (the official eval output)', async () => {
    const model = build({ ...microConfig('uniformer_micro_convstem'), return_dense: true, layer_scale: 'all', num_classes: 6 });
    fillWeights(model, 11);
    const x = normalInput([3, 3, 96, 96], 12);
    const { output } = await runModule(model, x);
    expect(output.shape).toEqual([3, 6]);
    const dense = trace((input) => model.forwardDense(input), [{ dtype: 'float32', shape: x.shape }]);
    expect(dense.graph.outputs.map((v) => v.shape)).toEqual([[3, 6], [3, 9, 6]]);
    const step = compile((input: Tensor) => model.forwardDense(input));
    const [cls, aux] = await step(x);
    await step.release();
    const expected = new Float64Array(18);
    for (let b = 0; b < 3; b++) {
      for (let k = 0; k < 6; k++) {
        let best = -Infinity;
        for (let t = 0; t < 9; t++) best = Math.max(best, aux!.get((b * 9 + t) * 6 + k));
        expected[b * 6 + k] = cls!.get(b * 6 + k) + 0.5 * best;
      }
    }
    expect(relErr(output, expected)).toBeLessThan(1e-5);
  });

  it('pre-logits, features and resetClassifier (0 classes: pooled features; TL keeps an aux_head per class count)', async () => {
    const model = build({ ...microConfig(), return_dense: true });
    const shapes = trace((x) => [model.forwardFeatures(x), model.forwardHead(model.forwardFeatures(x), true)], [{ dtype: 'float32', shape: [2, 3, 64, 64] }]);
    expect(shapes.graph.outputs.map((v) => v.shape)).toEqual([[2, 128, 2, 2], [2, 128]]);
    model.resetClassifier(4, new Rng(1));
    expect(model.aux_head && 'weight' in model.aux_head ? model.aux_head.weight.data.shape : undefined).toEqual([4, 128]);
    model.resetClassifier(0, new Rng(1));
    expect(model.namedTensors().some(([k]) => k.startsWith('head.') || k.startsWith('aux_head.'))).toBe(false);
    const { output } = await runModule(model, randn([2, 3, 64, 64], 3).astype('float32'));
    expect(output.shape).toEqual([2, 128]);
    const light = buildLight();
    light.resetClassifier(3, new Rng(2));
    expect(light.namedTensors().filter(([k]) => k.startsWith('head')).map(([, p]) => p.data.shape)).toEqual([[3, 128], [3], [3, 128], [3]]);
  });

  it('a head_dim-16 checkpoint loads into a head_dim-32 model without error but computes something else (the head_dim trap)', async () => {
    const f = loadFixture('uniformer_micro');
    const model = build({ ...microConfig(), head_dim: 32 });
    expect(model.loadStateDict(f.weights)).toEqual({ missing: [], unexpected: [], mismatched: [] });
    const { output } = await runModule(model, f.io.get('input')!.astype('float32'));
    expect(relErr(output, f.io.get('logits')!.toFloat64())).toBeGreaterThan(1e-3);
  });

  it('other sizes than img_size run (any multiple of 32) and the conv stem takes any size', async () => {
    const patch = build(microConfig());
    expect((await runModule(patch, randn([1, 3, 96, 128], 5).astype('float32'))).output.shape).toEqual([1, 10]);
    const conv = build(microConfig('uniformer_micro_convstem'));
    const { output } = await runModule(conv, randn([1, 3, 50, 70], 6).astype('float32'));
    expect(output.shape).toEqual([1, 10]);
    expect(finite(output)).toBe(true);
  });
});

// ------------------------------------------------------------------ checkpoint filter

describe('uniformer: checkpoint filter', () => {
  /** The fixture's weights as PaddleClas stores them (ppcls/arch/backbone/model_zoo/uniformer.py). */
  function toPaddle(weights: Map<string, NDArray>): Map<string, NDArray> {
    const out = new Map<string, NDArray>();
    for (const [k, v] of weights) {
      if (k.endsWith('num_batches_tracked')) continue;
      const key = k
        .replace(/^(blocks[12]\.\d+\.mlp)\.fc([12])\./, '$1.fc$2_conv.')
        .replace(/^(patch_embed\d)\.proj\.(weight|bias)$/, '$1.proj_conv.$2')
        .replace(/\.running_mean$/, '._mean')
        .replace(/\.running_var$/, '._variance');
      if (v.rank === 2 && k.endsWith('.weight')) {
        const [r, c] = v.shape as [number, number];
        const t = new Float32Array(r * c);
        for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[j * r + i] = v.get(i * c + j);
        out.set(key, NDArray.float32([c, r], t));
      } else out.set(key, v);
    }
    return out;
  }

  it("unwraps {'model': ...} (and model_ema), strips module., and loads strictly", () => {
    const f = loadFixture('uniformer_micro');
    const model = build(microConfig());
    const prefixed = new Map([...f.weights].map(([k, v]) => [`module.${k}`, v]));
    const sd = uniformerCheckpointFilter(extractStateDict(new Map<string, PickleValue>([['model', prefixed], ['model_ema', f.weights]])).tensors, model);
    expect([...sd.keys()]).toEqual([...f.weights.keys()]);
    expect(model.loadStateDict(sd)).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expect(uniformerCheckpointFilter(extractStateDict(new Map<string, PickleValue>([['model', new Map()], ['model_ema', f.weights]]), { key: 'model_ema' }).tensors, model).size).toBe(f.weights.size);
    expect(() => extractStateDict(new Map<string, PickleValue>([['optimizer', new Map([['step', 3]])]]))).toThrow(StateDictError);
  });

  for (const name of CASES) {
    it(`${name}: a PaddleClas-style copy (fc1_conv, proj_conv, _mean/_variance, [in, out] Linear weights) maps back exactly`, () => {
      const f = loadFixture(name);
      const paddle = toPaddle(f.weights);
      expect([...paddle.keys()].some((k) => k.includes('fc1_conv'))).toBe(true);
      const model = createModel('uniformer', f.manifest.kwargs) as UniFormer;
      const sd = uniformerCheckpointFilter(paddle, model);
      expect(model.loadStateDict(sd)).toEqual({ missing: [], unexpected: [], mismatched: [] });
      for (const [k, v] of f.weights) expect(Array.from(sd.get(k)!.toFloat64()), k).toEqual(Array.from(v.toFloat64()));
    });
  }
});

// ------------------------------------------------------------------ bad input

describe('uniformer: bad input and config', () => {
  const traceWith = (model: Module, shape: number[]) => () => trace((x) => model.call(x), [{ dtype: 'float32', shape }]);

  it('wrong input channels: a ShapeError naming the stem conv', () => {
    expect(traceWith(build(microConfig()), [2, 1, 64, 64])).toThrow(ShapeError);
    expect(traceWith(build(microConfig()), [2, 1, 64, 64])).toThrow(/patch_embed1\.proj/);
    expect(traceWith(build(microConfig('uniformer_micro_convstem')), [2, 4, 64, 64])).toThrow(/patch_embed1\.proj\.0/);
    expect(traceWith(buildLight(), [1, 1, 64, 64])).toThrow(/patch_embed1\.proj\.0/);
  });

  it('an image size the patch stem cannot divide: a ShapeError naming the patch embedding', () => {
    expect(traceWith(build(microConfig()), [2, 3, 66, 66])).toThrow(ShapeError);
    expect(traceWith(build(microConfig()), [2, 3, 66, 66])).toThrow(/module 'patch_embed1': a 66×66 map does not divide into 4×4 patches/);
    expect(traceWith(build(microConfig()), [2, 3, 60, 64])).toThrow(/module 'patch_embed2'/);
    expect(traceWith(buildLight(), [1, 3, 72, 72])).toThrow(/module 'patch_embed3'/);
  });

  it('bad configs are ConfigErrors', () => {
    expect(() => build({ ...microConfig(), depth: [1, 1, 1] })).toThrow(/depth must list 4 integers/);
    expect(() => build({ ...microConfig(), head_dim: 80 })).toThrow(/does not split into embed_dim \/\/ head_dim = 0 heads/);
    expect(() => build({ ...microConfig(), head_dim: 24 })).toThrow(/stage 4 has embed_dim 128, which does not split into/);
    expect(() => build({ ...microConfig(), layer_scale: true as never })).toThrow(/layer_scale must be/);
    expect(() => build({ ...microConfig(), norm_layer: { $partial: 'torch.nn.BatchNorm2d' } as never })).toThrow(ConfigError);
    expect(() => createModel('uniformer', { mix_token: true })).toThrow(/unknown config option 'mix_token'/);
    expect(() => buildLight({ prune_ratio: [[], [], [0.5, 0.5, 0.5], [0.5, 0.5]] })).toThrow(/first block of stage 3/);
    expect(() => buildLight({ prune_ratio: [[], [], [1, 0.5, 1], [0.5, 0.5]] })).toThrow(/last block of stage 3 must prune/);
    expect(() => buildLight({ trade_off: [[], [], [1, 0.5], [0.5, 0.5]] })).toThrow(/trade_off\[2\]/);
  });

  it('an EvoSABlock cannot be called on its own', () => {
    const model = buildLight().nameParameters();
    expect(traceWith(model.blocks3[0]!, [1, 64, 4, 4])).toThrow(/run it with step\(state\)/);
  });
});
