/**
 * CeiT (coeusguo/ceit): parity with the official fixtures (`ceit_micro` with
 * every recorded activation and its train-mode gradients, the full-size
 * `ceit_tiny`), the full-size key
 * spaces, small forwards of every block option, the checkpoint filter and
 * bad inputs.
 */
import { expectOfficialLayout } from '../helpers/official.js';
import { StateDictError } from '../../src/errors.js';
import { extractStateDict } from '../../src/io/torch.js';
import type { PickleValue } from '../../src/io/pickle.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../../src/errors.js';
import type { NDArray } from '../../src/ir/ndarray.js';
import { runModule } from '../../src/nn/run.js';
import { type CeIT, type CeitConfig, ceitCheckpointFilter, createModel, getVariant, listModels, pretrainedConfig } from '../../src/models/index.js';
import { Rng } from '../../src/rng.js';
import { trace } from '../../src/tensor/function.js';
import { trainModeGradients } from '../../src/train/debug.js';
import { type FixtureCase, loadFixture } from '../helpers/fixtures.js';
import { maxAbs, maxAbsDiff, randn } from '../helpers/opcheck.js';
import { checkParity } from '../helpers/parity.js';

const FULL_SIZE = ['ceit_tiny', 'ceit_small', 'ceit_base'];

/** Every key the fixture records: its stored activations and the aliased ones (inputs, `norm:in.0`, `head:out`). */
function recordedKeys(f: FixtureCase): string[] {
  return [...f.activations.keys(), ...Object.keys((f.manifest.activation_aliases ?? {}) as object)].sort();
}

const micro = () => loadFixture('ceit_micro').manifest.kwargs as unknown as Partial<CeitConfig>;
const build = (overrides: Partial<CeitConfig>) => createModel('ceit', overrides) as CeIT;
const finite = (a: NDArray) => Array.from(a.toFloat64()).every(Number.isFinite);

// ------------------------------------------------------------------ parity

describe('ceit: parity with the official code', () => {
  it('ceit_micro: logits and all 22 recorded activations (block tuples as :out.0 / :out.1)', async () => {
    const f = loadFixture('ceit_micro');
    const keys = recordedKeys(f);
    expect(keys).toHaveLength(22);
    expect(keys).toEqual(expect.arrayContaining(['blocks.0:out.0', 'blocks.0:out.1', 'blocks.2:out.1', 'lca.attn:out', 'head:in.0']));
    await checkParity('ceit_micro', (c) => createModel('ceit', c.manifest.kwargs), keys);
  });

  it('ceit_tiny (full size, 1000 classes, 224): logits, lca in/out, norm, head input', async () => {
    const f = loadFixture('ceit_tiny');
    const keys = recordedKeys(f);
    expect(keys).toEqual(['head:in.0', 'lca:in.0', 'lca:out', 'norm:out']);
    await checkParity('ceit_tiny', (c) => createModel(c.manifest.variant), keys);
  });

  it('ceit_micro: one train-mode step — loss, logits, every gradient and the BatchNorm buffers (the fixture rule)', async () => {
    const f = loadFixture('ceit_micro');
    const grads = f.grads!;
    const fp64 = new Map(f.manifest.grads!.tensors.map((t) => [t.name, t.fp64_abs ?? 0]));
    const model = createModel('ceit', f.manifest.kwargs);
    model.loadStateDict(f.weights);
    const r = await trainModeGradients(model, f.io.get('input')!.astype('float32'), grads.get('target')!);
    const got = new Map<string, NDArray>([
      ['loss', r.loss],
      ['logits_train', r.logits],
      ...[...r.grads].map(([k, v]): [string, NDArray] => [`grad.${k}`, v]),
      ...[...r.buffersAfter].map(([k, v]): [string, NDArray] => [`bn_after.${k}`, v]),
    ]);
    const expected = [...grads.keys()].filter((k) => k !== 'target');
    expect(expected).toHaveLength(116); // loss, logits, 84 gradients, 10 BatchNorms × 3 buffers
    const failures = expected.flatMap((n) => {
      const [a, ref] = [got.get(n), grads.get(n)!];
      if (!a) return [`${n}: not produced`];
      if (ref.dtype === 'int64') return a.toFloat64().join() === ref.toFloat64().join() ? [] : [`${n}: ${a.toFloat64().join()} vs ${ref.toFloat64().join()}`];
      const d = maxAbsDiff(a.toFloat64(), ref.toFloat64());
      const bound = 1e-4 * maxAbs(ref.toFloat64()) + 100 * fp64.get(n)!;
      return d <= bound ? [] : [`${n}: max|Δ| ${d.toExponential(2)} > ${bound.toExponential(2)}`];
    });
    expect(failures).toEqual([]);
    // The last block's LeFF reaches no class token: its gradients are exact zeros.
    const allZero = (f.manifest.grads as unknown as { all_zero: { keys: string[] } }).all_zero.keys;
    expect(allZero).toHaveLength(12);
    for (const k of allZero) expect(maxAbs(r.grads.get(k)!.toFloat64()), k).toBe(0);
  });
});

// ------------------------------------------------------------------ registry

describe('ceit: registry and full-size variants', () => {
  it('registers T/S/B at 224 and 384 with the DeiT evaluation transform', () => {
    expect(listModels('ceit*')).toEqual(['ceit_base', 'ceit_base_384', 'ceit_small', 'ceit_small_384', 'ceit_tiny', 'ceit_tiny_384']);
    for (const name of listModels('ceit*')) {
      const p = pretrainedConfig(name);
      const size = name.endsWith('_384') ? 384 : 224;
      expect([p.inputSize, p.interpolation, p.cropPct, p.numClasses, p.mean, p.std]).toEqual([[3, size, size], 'bicubic', 0.875, 1000, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]);
      // int(256/224 · S): 256 at 224, 438 at 384.
      expect(Math.floor(size / p.cropPct)).toBe(size === 224 ? 256 : 438);
    }
    expect(pretrainedConfig('ceit_tiny').weights?.top1).toBe(76.4);
    expect(pretrainedConfig('ceit_small_384').weights?.top1).toBe(83.3);
    expect(pretrainedConfig('ceit_base').weights?.url).toMatch(/drive\.google\.com\/file\/d\/1S19SQUic9ILBGNkcJTOy74MGoj-JRM4x/);
    expect(pretrainedConfig('ceit_base_384').weights).toBeUndefined();
    expect(getVariant('ceit_small_384').config).toEqual({ embed_dim: 384, num_heads: 6, img_size: 384 });
  });

  for (const name of FULL_SIZE) {
    it(`${name}: parameter count and state-dict keys, dtypes and shapes`, () => expectOfficialLayout(name));
  }

  it('384 variants differ only by the longer pos_embed (ceit.md §1: 6,429,864 and 24,350,760)', () => {
    for (const [name, params] of [['ceit_tiny_384', 6_429_864], ['ceit_small_384', 24_350_760]] as const) {
      const model = createModel(name) as CeIT;
      expect(model.numParams()).toBe(params);
      expect(model.pos_embed.data.shape).toEqual([1, 577, model.config.embed_dim]);
    }
  });
});

// ------------------------------------------------------------------ small forwards

describe('ceit: small forwards', () => {
  it('the micro config at batch 3: logits, features and pre-logits shapes, all finite', async () => {
    const model = build({ ...micro(), num_classes: 7 });
    const { output } = await runModule(model, randn([3, 3, 64, 64], 1).astype('float32'));
    expect(output.shape).toEqual([3, 7]);
    expect(finite(output)).toBe(true);
    const features = trace((x) => model.forwardHead(model.forwardFeatures(x), true), [{ dtype: 'float32', shape: [3, 3, 64, 64] }]);
    expect(features.graph.outputs[0]!.shape).toEqual([3, 48]);
  });

  it('LeFF without BN, a 5×5 depthwise kernel, a narrower Image2Tokens and the `hybrid_backbone: true` flag', async () => {
    const variants: Partial<CeitConfig>[] = [
      { leff_with_bn: false, leff_local_size: 5 },
      { hybrid_backbone: { $module: 'Image2Tokens', kwargs: { out_chans: 32, kernel_size: 5 } }, img_size: 48 },
      { hybrid_backbone: true, depth: 1 },
    ];
    for (const v of variants) {
      const cfg = { ...micro(), ...v };
      const model = build(cfg);
      const { output } = await runModule(model, randn([2, 3, cfg.img_size!, cfg.img_size!], 2).astype('float32'));
      expect(output.shape).toEqual([2, 10]);
      expect(finite(output)).toBe(true);
    }
    expect(build({ ...micro(), leff_with_bn: false }).namedTensors().some(([k]) => k.includes('leff.bn'))).toBe(false);
    expect(build({ ...micro(), hybrid_backbone: { $module: 'Image2Tokens', kwargs: { out_chans: 32 } } }).i2t.proj.weight.data.shape).toEqual([48, 32, 4, 4]);
  });

  it('resetClassifier replaces the head (0 classes: features only)', async () => {
    const model = build(micro());
    model.resetClassifier(0, new Rng(3));
    expect(model.namedTensors().some(([k]) => k.startsWith('head.'))).toBe(false);
    const { output } = await runModule(model, randn([1, 3, 64, 64], 3).astype('float32'));
    expect(output.shape).toEqual([1, 48]);
  });
});

// ------------------------------------------------------------------ checkpoint filter

describe('ceit: checkpoint filter', () => {
  it("unwraps {'model': ...} (and model_ema), strips module., and loads strictly", () => {
    const f = loadFixture('ceit_micro');
    const model = build(micro());
    const prefixed = new Map([...f.weights].map(([k, v]) => [`module.${k}`, v]));
    const sd = ceitCheckpointFilter(extractStateDict(new Map<string, PickleValue>([['model', prefixed], ['model_ema', f.weights]])).tensors, model);
    expect([...sd.keys()]).toEqual([...f.weights.keys()]);
    expect(model.loadStateDict(sd)).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expect(ceitCheckpointFilter(extractStateDict(new Map<string, PickleValue>([['model', new Map()], ['model_ema', f.weights]]), { key: 'model_ema' }).tensors, model).size).toBe(f.weights.size);
    expect(() => extractStateDict(new Map<string, PickleValue>([['optimizer', new Map([['step', 3]])]]))).toThrow(StateDictError);
  });

  it('resamples pos_embed to another resolution and drops a head of another size (as --finetune does)', async () => {
    const f = loadFixture('ceit_micro');
    const model = build({ ...micro(), img_size: 96, num_classes: 4 });
    const sd = ceitCheckpointFilter(f.weights, model);
    expect(sd.get('pos_embed')!.shape).toEqual([1, 37, 48]);
    expect(sd.has('head.weight')).toBe(false);
    const report = model.loadStateDict(sd, { strict: false });
    expect(report).toEqual({ missing: ['head.weight', 'head.bias'], unexpected: [], mismatched: [] });
    // The class token's position is kept as is.
    expect(Array.from(sd.get('pos_embed')!.toFloat64().subarray(0, 48))).toEqual(Array.from(f.weights.get('pos_embed')!.toFloat64().subarray(0, 48)));
    const { output } = await runModule(model, randn([1, 3, 96, 96], 4).astype('float32'));
    expect(finite(output)).toBe(true);
  });
});

// ------------------------------------------------------------------ bad input

describe('ceit: bad input and config', () => {
  const model = build(micro());
  const traceWith = (shape: number[]) => () => trace((x) => model.call(x), [{ dtype: 'float32', shape }]);

  it('wrong input channels: a ShapeError naming i2t.backbone.conv', () => {
    expect(traceWith([2, 1, 64, 64])).toThrow(ShapeError);
    expect(traceWith([2, 1, 64, 64])).toThrow(/i2t\.backbone\.conv/);
  });

  it('wrong image size: a ShapeError naming i2t and img_size', () => {
    expect(traceWith([2, 3, 96, 96])).toThrow(ShapeError);
    expect(traceWith([2, 3, 96, 96])).toThrow(/^i2t: input \[2, 3, 96, 96\] does not match the model's img_size 64/);
  });

  it('bad configs are ConfigErrors', () => {
    expect(() => build({ ...micro(), hybrid_backbone: false })).toThrow(/hybrid_backbone/);
    expect(() => build({ ...micro(), hybrid_backbone: { $module: 'Image2Tokens', kwargs: { channels: 3 } as never } })).toThrow(/unknown Image2Tokens option 'channels'/);
    expect(() => build({ ...micro(), norm_layer: { $partial: 'torch.nn.BatchNorm2d' } as never })).toThrow(ConfigError);
    expect(() => build({ ...micro(), num_heads: 5 })).toThrow(/not divisible/);
    expect(() => build({ ...micro(), img_size: 8 })).toThrow(/empty token grid/);
    expect(() => createModel('ceit', { leff_size: 3 })).toThrow(/unknown config option 'leff_size'/);
  });
});
