/**
 * MixFormer (PaddleClas PR #1820): parity with the fixtures of the faithful
 * PyTorch port, the full-size key spaces, window padding at sizes that are
 * not multiples of 7, the Paddle checkpoint conversion, and bad inputs.
 */
import { expectOfficialLayout } from '../helpers/official.js';
import { describe, expect, it } from 'vitest';
import { ShapeError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { Module } from '../../src/nn/module.js';
import { runModule } from '../../src/nn/run.js';
import { createModel, getVariant, listModels, pretrainedConfig } from '../../src/models/index.js';
import { type MixFormer, MixingBlock } from '../../src/models/mixformer.js';
import { convertPaddleStateDict } from '../../src/models/paddle.js';
import { Rng } from '../../src/rng.js';
import { type Tensor, concat, zeros } from '../../src/tensor/tensor.js';
import { loadFixture } from '../helpers/fixtures.js';
import { expectClose, maxAbs, maxAbsDiff, randn } from '../helpers/opcheck.js';
import { checkParity } from '../helpers/parity.js';

const VARIANTS = ['mixformer_b0', 'mixformer_b1', 'mixformer_b2', 'mixformer_b3', 'mixformer_b4', 'mixformer_b5', 'mixformer_b6'];

/** The `mixformer_micro` fixture's constructor call. */
const MICRO = { embed_dim: 16, depths: [1, 1, 2, 1], num_heads: [1, 2, 4, 8], drop_path_rate: 0, class_num: 10, img_size: 224 };

const micro = (over: object = {}) => createModel('mixformer', { ...MICRO, ...over }) as MixFormer;

/** Standard-normal float32 input. */
const input = (shape: number[], seed: number) => randn(shape, seed).astype('float32');

/** Non-trivial weights (BN variances positive), so padding or ordering mistakes cannot hide behind near-identity parameters. */
function randomize(model: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const [key, p] of model.namedTensors()) {
    if (p.data.dtype !== 'float32') continue;
    const d = p.data.data as Float32Array;
    for (let i = 0; i < d.length; i++) d[i] = key.endsWith('running_var') ? 0.5 + rng.uniform() : rng.normal() * 0.3;
  }
}

function transpose2d(a: NDArray): NDArray {
  const [r, c] = a.shape as [number, number];
  const src = a.toFloat64();
  const out = NDArray.float32([c, r]);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.data[j * r + i] = src[i * c + j]!;
  return out;
}

function sameArray(a: NDArray, b: NDArray): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join()) return false;
  for (let i = 0; i < a.size; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}

describe('mixformer: parity with the PaddleClas port fixtures', () => {
  it('mixformer_micro: output and every recorded activation', async () => {
    await checkParity('mixformer_micro', (f) => createModel('mixformer', f.manifest.kwargs), [
      'patch_embed:out',
      'layers.2.blocks.0.attn:in.0',
      'layers.2.blocks.0.attn:out',
      'layers.2.downsample:out',
      'layers.3.blocks.0:out',
      'norm:out',
      'head:in.0',
    ]);
  });

  it('mixformer_b0 (full size, 224): logits and pre-logits', async () => {
    await checkParity('mixformer_b0', () => createModel('mixformer_b0'), ['head:in.0']);
  });

  it('builds the relative_position_index the official code stores', () => {
    const ref = loadFixture('mixformer_micro').weights.get('layers.0.blocks.0.attn.relative_position_index')!;
    const built = micro().stateDict().get('layers.0.blocks.0.attn.relative_position_index')!;
    expect(built.dtype).toBe('int64');
    expect(sameArray(built, ref)).toBe(true);
  });
});

describe('mixformer: registry and full-size variants', () => {
  it('registers B0–B6 with the PaddleClas eval transform and the published weights (B1–B4, B6)', () => {
    expect(listModels('mixformer*')).toEqual(VARIANTS);
    for (const name of VARIANTS) {
      const p = pretrainedConfig(name);
      expect(p.inputSize).toEqual([3, 224, 224]);
      expect(p.interpolation).toBe('bicubic');
      expect(p.cropPct).toBeCloseTo(224 / 256);
      const stem = name.slice(-2).toUpperCase();
      if (stem === 'B0' || stem === 'B5') expect(p.weights).toBeUndefined();
      else expect(p.weights).toEqual(expect.objectContaining({ url: `https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/MixFormer_${stem}_pretrained.pdparams`, format: 'pdparams' }));
    }
    expect(getVariant('mixformer_b6').config).toEqual({ embed_dim: 96, depths: [2, 4, 16, 12], num_heads: [6, 12, 24, 48], drop_path_rate: 0.5 });
  });

  for (const name of VARIANTS) {
    it(`${name}: parameter count and state-dict keys, dtypes and shapes`, () => expectOfficialLayout(name));
  }

  it('accepts the PyTorch name num_classes for class_num, and class_num 0 (no head)', async () => {
    expect(micro({ num_classes: 7 }).stateDict().get('head.weight')!.shape).toEqual([7, 1280]);
    const headless = micro({ class_num: 0 });
    expect(headless.stateDict().has('head.weight')).toBe(false);
    const { output } = await runModule(headless.eval(), input([1, 3, 64, 64], 3));
    expect(output.shape).toEqual([1, 1280]);
  });

  it('resetClassifier replaces the head, named by its key', () => {
    const model = micro();
    model.resetClassifier(5, new Rng(1));
    expect(model.numClasses).toBe(5);
    expect(model.namedParameters().find(([k]) => k === 'head.weight')![1].name).toBe('head.weight');
    expect(model.stateDict().get('head.weight')!.shape).toEqual([5, 1280]);
  });
});

describe('mixformer: inputs whose stage sizes are not multiples of 7', () => {
  it('runs a 96×128 batch (stages 24×32 … 3×4, all padded, H ≢ W mod 7): shape and finiteness', async () => {
    const model = micro();
    randomize(model, 5);
    const { output } = await runModule(model.eval(), input([2, 3, 96, 128], 4));
    expect(output.shape).toEqual([2, 10]);
    output.assertFinite('mixformer 96×128 logits');
  });

  it('the stem pads the bottom and right to multiples of the patch size (94×126 equals a zero-padded 96×128)', async () => {
    const model = micro().eval();
    randomize(model, 6);
    const x = input([1, 3, 94, 126], 7);
    const padded = (top: number, left: number) => {
      const out = NDArray.float32([1, 3, 96, 128]);
      for (let c = 0; c < 3; c++) for (let y = 0; y < 94; y++) for (let z = 0; z < 126; z++) out.data[(c * 96 + y + top) * 128 + z + left] = x.data[(c * 94 + y) * 126 + z]!;
      return out;
    };
    const got = (await runModule(model, x)).output.toFloat64();
    const bottomRight = (await runModule(model, padded(0, 0))).output.toFloat64();
    const topLeft = (await runModule(model, padded(2, 2))).output.toFloat64();
    expectClose(got, bottomRight, 1e-5, 'stem padding');
    expect(maxAbsDiff(got, topLeft)).toBeGreaterThan(1e-3 * maxAbs(topLeft));
  });

  /**
   * Pins the window padding of the block: Paddle's `F.pad` pads an NHWC map
   * from the first axis, i.e. pad_b rows under H and pad_r columns right of W.
   * The PyTorch port passes the same list to torch's `F.pad`, which reads it
   * from the last axis and so swaps them; that only equals Paddle when
   * H ≡ W (mod 7) (then pad_b = pad_r), and otherwise cannot even tile the map.
   * Here H = 8, W = 17: pad_b = 6, pad_r = 4 (Hp 14, Wp 21), where the swapped
   * pads would give 12×23. The reference pads by concatenating zeros, without
   * Tensor.pad's argument order; padding the top/left instead must differ.
   */
  it('the mixing block zero-pads the bottom of H and the right of W', async () => {
    const [h, w, ws, c] = [8, 17, 7, 16];
    const block = new MixingBlock(c, { rng: new Rng(2), heads: 2, windowSize: ws, dwconvKernel: 3, mlpRatio: 4, qkvBias: true, qkScale: null, drop: 0, attnDrop: 0, dropPath: 0 });
    randomize(block, 8);
    block.eval().at(h, w);

    class ExplicitPadding extends Module {
      constructor(readonly topLeft: boolean) {
        super();
      }
      forward(x: Tensor): Tensor {
        const [b, hp, wp] = [x.dim(0), 14, 21];
        let z = block.norm1.call(x).reshape(b, h, w, c);
        const rows = zeros([b, hp - h, w, c]);
        z = concat(this.topLeft ? [rows, z] : [z, rows], 1);
        const cols = zeros([b, hp, wp - w, c]);
        z = concat(this.topLeft ? [cols, z] : [z, cols], 2);
        const windows = z.reshape(b, hp / ws, ws, wp / ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c);
        block.attn.paddedSize = [hp, wp];
        const map = block.attn.call(windows).reshape(b, hp / ws, wp / ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c);
        const [y0, x0] = this.topLeft ? [hp - h, wp - w] : [0, 0];
        const y = map.slice(1, y0, y0 + h).slice(2, x0, x0 + w).reshape(b, h * w, c);
        const s = x.add(y);
        return s.add(block.mlp.call(block.norm2.call(s)));
      }
    }

    const x = input([2, h * w, c], 9);
    const got = (await runModule(block, x)).output.toFloat64();
    const ref = (await runModule(new ExplicitPadding(false), x)).output.toFloat64();
    const wrong = (await runModule(new ExplicitPadding(true), x)).output.toFloat64();
    expectClose(got, ref, 1e-5, 'bottom/right window padding');
    expect(maxAbsDiff(got, wrong)).toBeGreaterThan(1e-3 * maxAbs(wrong));
  });
});

describe('mixformer: PaddlePaddle checkpoints', () => {
  it('convertPaddleStateDict inverts the Paddle layout exactly (Linear transposed, BN renamed, table and index kept)', () => {
    const { weights, manifest } = loadFixture('mixformer_micro');
    // The fixture in Paddle's layout: Linear weights [in, out], BN `_mean`/`_variance`, no num_batches_tracked.
    const paddle = new Map<string, NDArray>();
    for (const [key, value] of weights) {
      if (key.endsWith('.num_batches_tracked')) continue;
      const k = key.replace(/\.running_mean$/, '._mean').replace(/\.running_var$/, '._variance');
      paddle.set(k, key.endsWith('.weight') && value.rank === 2 ? transpose2d(value) : value);
    }
    expect(paddle.get('layers.0.blocks.0.attn.qkv.weight')!.shape).toEqual([8, 24]);

    const converted = convertPaddleStateDict(paddle);
    expect([...converted.keys()].sort()).toEqual([...weights.keys()].sort());
    for (const [key, value] of weights) expect(sameArray(converted.get(key)!, value), key).toBe(true);
    createModel('mixformer', manifest.kwargs).loadStateDict(converted);
  });
});

describe('mixformer: bad input', () => {
  it('wrong input channels: a ShapeError naming the stem conv', async () => {
    const run = runModule(micro().eval(), input([1, 4, 64, 64], 1));
    await expect(run).rejects.toThrow(ShapeError);
    await expect(run).rejects.toThrow(/patch_embed\.stem\.0/);
  });

  it('a side that is not a multiple of 32: a ShapeError naming the merging layer', async () => {
    // 100×120: the stem gives 25×30 and ConvMerging needs even sides.
    const run = runModule(micro().eval(), input([1, 3, 100, 120], 2));
    await expect(run).rejects.toThrow(ShapeError);
    await expect(run).rejects.toThrow(/layers\.0\.downsample.*25×30/);
  });
});
