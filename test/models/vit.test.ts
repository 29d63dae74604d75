/**
 * ViT / DeiT (timm's VisionTransformer): a small model against a direct
 * float64 evaluation of the ViT equations (there is no PyTorch fixture for
 * the baseline), timm's key space and parameter counts, the pretrained
 * configs, the checkpoint filter with position-embedding resampling, and bad
 * inputs.
 */
import { StateDictError } from '../../src/errors.js';
import { extractStateDict } from '../../src/io/torch.js';
import type { PickleValue } from '../../src/io/pickle.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, ShapeError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { runModule } from '../../src/nn/run.js';
import {
  type VisionTransformer,
  type VitConfig,
  bilinearWeights,
  createModel,
  getVariant,
  listModels,
  pretrainedConfig,
  resamplePosEmbed,
  resolveConfig,
  vitCheckpointFilter,
} from '../../src/models/index.js';
import { Rng } from '../../src/rng.js';
import { trace } from '../../src/tensor/function.js';
import { expectClose, randn } from '../helpers/opcheck.js';
import { erf } from '../helpers/erf.js';

const SMALL: Partial<VitConfig> = { img_size: 32, patch_size: 8, embed_dim: 16, depth: 2, num_heads: 2, num_classes: 5 };
const build = (overrides: Partial<VitConfig>) => createModel('vit', overrides) as VisionTransformer;
const finite = (a: NDArray) => Array.from(a.toFloat64()).every(Number.isFinite);

/** Non-trivial norms, biases and embeddings, so that a swapped or missing term cannot hide behind 1/0 initialisation. */
function perturb(model: VisionTransformer, seed: number): void {
  const rng = new Rng(seed);
  for (const [key, p] of model.namedTensors()) {
    const a = p.data.data as Float32Array;
    const isNorm = /norm\d?\.weight$/.test(key);
    for (let i = 0; i < a.length; i++) {
      if (isNorm) a[i] = 1 + 0.1 * rng.normal();
      else if (key.endsWith('.bias') || key === 'cls_token' || key === 'pos_embed') a[i] = 0.1 * rng.normal();
      else a[i] = a[i]! * 5;
    }
  }
}

// ------------------------------------------------------------------ the ViT equations, in float64

type Mat = number[][];

function referenceVit(sd: Map<string, NDArray>, c: VitConfig, x: NDArray): number[][] {
  const w = (k: string) => sd.get(k)!.toFloat64();
  const [batch, chans, size] = x.shape as [number, number, number];
  const d = c.embed_dim;
  const p = c.patch_size;
  const g = size / p;
  const xs = x.toFloat64();
  const linear = (t: Mat, key: string, out: number): Mat => {
    const wt = w(`${key}.weight`);
    const b = w(`${key}.bias`);
    return t.map((row) => Array.from({ length: out }, (_, o) => row.reduce((s, v, i) => s + v * wt[o * row.length + i]!, b[o]!)));
  };
  const layerNorm = (t: Mat, key: string): Mat => {
    const gamma = w(`${key}.weight`);
    const beta = w(`${key}.bias`);
    return t.map((row) => {
      const mean = row.reduce((a, b) => a + b, 0) / row.length;
      const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / row.length;
      return row.map((v, i) => ((v - mean) / Math.sqrt(variance + 1e-6)) * gamma[i]! + beta[i]!);
    });
  };
  const add = (a: Mat, b: Mat): Mat => a.map((row, i) => row.map((v, j) => v + b[i]![j]!));
  const logits: number[][] = [];
  for (let b = 0; b < batch; b++) {
    const pw = w('patch_embed.proj.weight');
    const pb = w('patch_embed.proj.bias');
    const pos = w('pos_embed');
    const cls = w('cls_token');
    let t: Mat = [Array.from({ length: d }, (_, j) => cls[j]! + pos[j]!)];
    for (let gy = 0; gy < g; gy++) {
      for (let gx = 0; gx < g; gx++) {
        const n = gy * g + gx + 1;
        t.push(
          Array.from({ length: d }, (_, o) => {
            let s = pb[o]!;
            for (let ci = 0; ci < chans; ci++) for (let ky = 0; ky < p; ky++) for (let kx = 0; kx < p; kx++) s += pw[((o * chans + ci) * p + ky) * p + kx]! * xs[((b * chans + ci) * size + gy * p + ky) * size + gx * p + kx]!;
            return s + pos[n * d + o]!;
          }),
        );
      }
    }
    const hd = d / c.num_heads;
    for (let i = 0; i < c.depth; i++) {
      const k = `blocks.${i}`;
      const qkv = linear(layerNorm(t, `${k}.norm1`), `${k}.attn.qkv`, 3 * d);
      const heads: Mat = t.map(() => new Array<number>(d).fill(0));
      for (let h = 0; h < c.num_heads; h++) {
        for (let qi = 0; qi < t.length; qi++) {
          const logitsRow = t.map((_, ki) => {
            let s = 0;
            for (let e = 0; e < hd; e++) s += qkv[qi]![h * hd + e]! * qkv[ki]![d + h * hd + e]!;
            return s / Math.sqrt(hd);
          });
          const m = Math.max(...logitsRow);
          const ex = logitsRow.map((v) => Math.exp(v - m));
          const z = ex.reduce((a, b2) => a + b2, 0);
          for (let e = 0; e < hd; e++) heads[qi]![h * hd + e] = ex.reduce((s, a, ki) => s + (a / z) * qkv[ki]![2 * d + h * hd + e]!, 0);
        }
      }
      t = add(t, linear(heads, `${k}.attn.proj`, d));
      const hidden = linear(layerNorm(t, `${k}.norm2`), `${k}.mlp.fc1`, Math.floor(d * c.mlp_ratio)).map((row) => row.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))));
      t = add(t, linear(hidden, `${k}.mlp.fc2`, d));
    }
    logits.push(linear(layerNorm([t[0]!], 'norm'), 'head', c.num_classes)[0]!);
  }
  return logits;
}

describe('vit: forward', () => {
  it('a small ViT equals the ViT equations evaluated in float64', async () => {
    const model = build(SMALL);
    perturb(model, 1);
    const x = randn([2, 3, 32, 32], 2);
    const { output } = await runModule(model, x.astype('float32'));
    const ref = referenceVit(model.stateDict(), model.config, x);
    expect(output.shape).toEqual([2, 5]);
    expectClose(output.toFloat64(), ref.flat(), 1e-4, 'vit logits');
    // The reference's own sanity: the logits are not degenerate.
    expect(Math.max(...ref.flat()) - Math.min(...ref.flat())).toBeGreaterThan(0.1);
  });

  it('features keep all tokens; pre-logits are the class token; 0 classes drops the head', async () => {
    const model = build(SMALL);
    const shapes = trace((x) => [model.forwardFeatures(x), model.forwardHead(model.forwardFeatures(x), true)], [{ dtype: 'float32', shape: [3, 3, 32, 32] }]).graph.outputs.map((o) => o.shape);
    expect(shapes).toEqual([[3, 17, 16], [3, 16]]);
    model.resetClassifier(0, new Rng(0));
    expect(model.namedTensors().some(([k]) => k.startsWith('head.'))).toBe(false);
    const { output } = await runModule(model, randn([1, 3, 32, 32], 3).astype('float32'));
    expect(output.shape).toEqual([1, 16]);
    expect(finite(output)).toBe(true);
  });
});

// ------------------------------------------------------------------ registry

/** timm's VisionTransformer state dict for a classic ViT/DeiT config. */
function timmKeys(d: number, depth: number, tokens: number): string[] {
  const lines = [`cls_token [1,1,${d}]`, `pos_embed [1,${tokens},${d}]`, `patch_embed.proj.weight [${d},3,16,16]`, `patch_embed.proj.bias [${d}]`];
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}`;
    lines.push(
      `${b}.norm1.weight [${d}]`,
      `${b}.norm1.bias [${d}]`,
      `${b}.attn.qkv.weight [${3 * d},${d}]`,
      `${b}.attn.qkv.bias [${3 * d}]`,
      `${b}.attn.proj.weight [${d},${d}]`,
      `${b}.attn.proj.bias [${d}]`,
      `${b}.norm2.weight [${d}]`,
      `${b}.norm2.bias [${d}]`,
      `${b}.mlp.fc1.weight [${4 * d},${d}]`,
      `${b}.mlp.fc1.bias [${4 * d}]`,
      `${b}.mlp.fc2.weight [${d},${4 * d}]`,
      `${b}.mlp.fc2.bias [${d}]`,
    );
  }
  return [...lines, `norm.weight [${d}]`, `norm.bias [${d}]`, `head.weight [1000,${d}]`, `head.bias [1000]`];
}

describe('vit: registry', () => {
  it('registers DeiT (full and short names) and ViT-Ti/S/B with timm\'s pretrained configs', () => {
    expect(listModels('deit*')).toEqual(['deit_base', 'deit_base_patch16_224', 'deit_small', 'deit_small_patch16_224', 'deit_tiny', 'deit_tiny_patch16_224']);
    expect(listModels('vit_*')).toEqual(['vit_base_patch16_224', 'vit_small_patch16_224', 'vit_tiny_patch16_224']);
    for (const name of listModels('deit*')) {
      const p = pretrainedConfig(name);
      expect([p.inputSize, p.interpolation, p.cropPct, p.mean, p.std]).toEqual([[3, 224, 224], 'bicubic', 0.875, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]);
      expect(p.weights?.url).toMatch(/^https:\/\/dl\.fbaipublicfiles\.com\/deit\/deit_(tiny|small|base)_patch16_224-[0-9a-f]{8}\.pth$/);
    }
    expect(pretrainedConfig('deit_small').paperTop1).toBe(79.8);
    for (const name of listModels('vit_*')) {
      const p = pretrainedConfig(name);
      expect([p.inputSize, p.interpolation, p.cropPct, p.mean, p.std]).toEqual([[3, 224, 224], 'bicubic', 0.9, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]);
      expect(p.weights?.url).toMatch(new RegExp(`^https://huggingface\\.co/timm/${name}\\.augreg2?_in21k_ft_in1k/resolve/main/model\\.safetensors$`));
    }
    // Same architecture under every name of a size: only the weights differ.
    for (const size of ['tiny', 'small', 'base']) {
      const configs = [`deit_${size}`, `deit_${size}_patch16_224`, `vit_${size}_patch16_224`].map((n) => resolveConfig(n).config);
      expect(configs[1]).toEqual(configs[0]);
      expect(configs[2]).toEqual(configs[0]);
    }
    expect(getVariant('deit_tiny').config).toEqual({ patch_size: 16, depth: 12, embed_dim: 192, num_heads: 3 });
  });

  for (const [name, d, params] of [['deit_tiny', 192, 5_717_416], ['deit_small', 384, 22_050_664], ['deit_base', 768, 86_567_656]] as const) {
    it(`${name}: timm's parameter count and state-dict keys and shapes`, () => {
      const model = createModel(name);
      expect(model.numParams()).toBe(params);
      expect(model.namedTensors().map(([k, p]) => `${k} [${p.data.shape.join(',')}]`)).toEqual(timmKeys(d, 12, 197));
      expect(model.namedBuffers()).toHaveLength(0);
    });
  }
});

// ------------------------------------------------------------------ checkpoint filter

describe('vit: checkpoint filter and position-embedding resampling', () => {
  it('bilinear weights follow PyTorch (align_corners=False): up, down and identity', () => {
    expect(Array.from(bilinearWeights(2, 4))).toEqual([1, 0, 0.75, 0.25, 0.25, 0.75, 0, 1]);
    expect(Array.from(bilinearWeights(4, 2))).toEqual([0.5, 0.5, 0, 0, 0, 0, 0.5, 0.5]);
    expect(Array.from(bilinearWeights(3, 3))).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
  });

  it('resamplePosEmbed keeps the class token and interpolates the grid separably', () => {
    // 1 class token + a 2×2 grid, 2 channels: channel 0 = row index, channel 1 = 10·column index.
    const pos = NDArray.float32([1, 5, 2], [7, 8, 0, 0, 0, 10, 1, 0, 1, 10]);
    const out = resamplePosEmbed(pos, [4, 3], 1);
    expect(out.shape).toEqual([1, 13, 2]);
    const v = Array.from(out.toFloat64());
    expect(v.slice(0, 2)).toEqual([7, 8]);
    const rows = [0, 0.25, 0.75, 1];
    const cols = [0, 5, 10]; // 2 → 3: sources at −1/6 (clamped to 0), 0.5, 7/6 (clamped to the last)
    for (let y = 0; y < 4; y++) for (let x = 0; x < 3; x++) {
      expect(v[2 + (y * 3 + x) * 2]).toBeCloseTo(rows[y]!, 6);
      expect(v[3 + (y * 3 + x) * 2]).toBeCloseTo(cols[x]!, 5);
    }
    expect(() => resamplePosEmbed(NDArray.float32([1, 6, 2]), [2, 2], 1)).toThrow(/do not form a square grid/);
  });

  it("accepts timm and official DeiT ({'model': ...}) state dicts and resamples pos_embed to the model's grid", async () => {
    const source = build(SMALL);
    perturb(source, 5);
    const sd = source.stateDict();
    const ddp = new Map([...sd].map(([k, v]) => [`module.${k}`, v]));
    ddp.set('module.pre_logits.fc.weight', NDArray.float32([16, 16]));

    const same = build(SMALL);
    const filtered = vitCheckpointFilter(extractStateDict(new Map<string, PickleValue>([['model', ddp]])).tensors, same);
    expect([...filtered.keys()]).toEqual([...sd.keys()]);
    expect(same.loadStateDict(filtered)).toEqual({ missing: [], unexpected: [], mismatched: [] });
    expect(vitCheckpointFilter(sd, same).get('pos_embed')).toBe(sd.get('pos_embed'));

    const larger = build({ ...SMALL, img_size: 48 });
    const resampled = vitCheckpointFilter(sd, larger);
    expect(resampled.get('pos_embed')!.shape).toEqual([1, 37, 16]);
    larger.loadStateDict(resampled);
    const { output } = await runModule(larger, randn([1, 3, 48, 48], 6).astype('float32'));
    expect(finite(output)).toBe(true);
    expect(() => extractStateDict(new Map<string, PickleValue>([['model_ema', sd]]), { key: 'model' })).toThrow(StateDictError);
  });
});

// ------------------------------------------------------------------ bad input

describe('vit: bad input and config', () => {
  const model = build(SMALL);
  const traceWith = (shape: number[]) => () => trace((x) => model.call(x), [{ dtype: 'float32', shape }]);

  it('wrong input channels: a ShapeError naming patch_embed.proj', () => {
    expect(traceWith([1, 4, 32, 32])).toThrow(ShapeError);
    expect(traceWith([1, 4, 32, 32])).toThrow(/patch_embed\.proj/);
  });

  it('wrong image size: a ShapeError naming patch_embed and img_size', () => {
    expect(traceWith([1, 3, 40, 40])).toThrow(ShapeError);
    expect(traceWith([1, 3, 40, 40])).toThrow(/^patch_embed: input \[1, 3, 40, 40\] does not match the model's img_size 32/);
  });

  it('bad configs are ConfigErrors', () => {
    expect(() => build({ ...SMALL, num_heads: 3 })).toThrow(ConfigError);
    expect(() => build({ ...SMALL, img_size: 4 })).toThrow(/smaller than patch_size/);
    expect(() => createModel('vit', { global_pool: 'avg' })).toThrow(/unknown config option 'global_pool'/);
  });
});
