/**
 * X-volution has no official code or weights, so its parity standard is the
 * spec's self-consistency tests (shared/models/xvolution.md §8), one describe
 * each, plus the spec's parameter table, the proposed key names, per-op
 * gradient checks of the composites, and the checkpoint metadata.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { interpret } from '../../src/backends/reference/interpreter.js';
import { ConfigError, ShapeError } from '../../src/errors.js';
import type { Value } from '../../src/ir/graph.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { BatchNorm2d } from '../../src/nn/layers.js';
import type { Module } from '../../src/nn/module.js';
import { runModule } from '../../src/nn/run.js';
import { createModel, getVariant } from '../../src/models/registry.js';
import '../../src/models/resnet.js';
import type { BasicBlock, ResNet } from '../../src/models/resnet.js';
import {
  D4,
  D8,
  type Offset,
  XResNet,
  type XResNetConfig,
  XVolution,
  XVolutionSA,
  checkXVolutionMetadata,
  xresnetCheckpointFilter,
  globalAttention,
  pssaProducts,
  sampleGrid,
  shiftedNeighbours,
  xvolutionMetadata,
} from '../../src/models/xvolution.js';
import { Rng } from '../../src/rng.js';
import { trace } from '../../src/tensor/function.js';
import { type Tensor, conv2d } from '../../src/tensor/tensor.js';
import { checkOp, expectClose, maxAbs, maxAbsDiff, randn } from '../helpers/opcheck.js';

// ----------------------------------------------------------------- helpers

/** Runs `fn` once on the reference interpreter (float64). */
function runRef(fn: (...xs: Tensor[]) => Tensor, inputs: readonly NDArray[]): { shape: readonly number[]; data: Float64Array } {
  const traced = trace(fn, inputs.map((a) => ({ dtype: 'float32' as const, shape: a.shape })));
  return interpret(traced.graph, new Map<Value, NDArray>(traced.inputs.map((v, i) => [v, inputs[i]!])))[0]!;
}

const f32 = (a: NDArray) => NDArray.float32(a.shape, a.toFloat64());

/** Non-trivial BN statistics and affine parameters everywhere (spec README §2.7). */
function perturbBatchNorms(model: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof BatchNorm2d)) continue;
    const n = m.numFeatures;
    const draw = (f: () => number) => NDArray.float32([n], Array.from({ length: n }, f));
    m.weight.data = draw(() => 1 + 0.3 * rng.normal());
    m.bias.data = draw(() => 0.2 * rng.normal());
    m.running_mean.data = draw(() => 0.2 * rng.normal());
    m.running_var.data = draw(() => 0.5 + rng.uniform());
  }
}

async function forward(model: Module, input: NDArray, backend: 'ort' | 'reference' = 'reference'): Promise<NDArray> {
  return (await runModule(model.nameParameters().eval(), f32(input), { backend, threads: 1 })).output;
}

// --------------------------------------------------------- §8.2 shifts

describe('§8.2 shift semantics', () => {
  /** One-hot x (1 at channel c, pixel p); asserts N_k is 1 exactly at p − L·δ_k (wrapped when circular) and 0 elsewhere. */
  function checkOneHot(h: number, w: number, c: number, p: [number, number], shift: number, fill: 'zeros' | 'circular', offsets: readonly Offset[]) {
    const channels = 2;
    const x = NDArray.float64([1, channels, h, w]);
    x.data[(c * h + p[0]) * w + p[1]] = 1;
    const n = runRef((t) => shiftedNeighbours(t, offsets, shift, fill), [x]);
    expect(n.shape).toEqual([1, channels, offsets.length, h, w]);
    offsets.forEach(([dy, dx], k) => {
      let [i, j] = [p[0] - shift * dy, p[1] - shift * dx];
      if (fill === 'circular') [i, j] = [((i % h) + h) % h, ((j % w) + w) % w];
      const inside = i >= 0 && i < h && j >= 0 && j < w;
      for (let cc = 0; cc < channels; cc++) {
        for (let y = 0; y < h; y++) {
          for (let xx = 0; xx < w; xx++) {
            const v = n.data[(((cc * offsets.length + k) * h + y) * w) + xx]!;
            expect(v, `tap ${k} (${dy},${dx}) channel ${cc} at (${y},${xx})`).toBe(inside && cc === c && y === i && xx === j ? 1 : 0);
          }
        }
      }
    });
  }

  it('D8, L = 1, interior pixel: each tap sees the 1 at p − δ_k', () => checkOneHot(5, 6, 1, [2, 3], 1, 'zeros', D8));
  it('zero fill at a corner: taps whose source lies outside the map see nothing', () => checkOneHot(5, 6, 0, [0, 5], 1, 'zeros', D8));
  it('L = 2 and D4 near the border', () => checkOneHot(5, 6, 1, [1, 4], 2, 'zeros', D4));
  it('circular fill wraps around the borders', () => checkOneHot(4, 5, 0, [0, 4], 1, 'circular', D8));
  it('a shift longer than the map is all zeros with zero fill', () => checkOneHot(3, 3, 0, [1, 1], 3, 'zeros', D8));
  it('products are x · N_k(x), channel-major (c·D + k)', () => {
    const x = randn([1, 2, 3, 4], 1);
    const p = runRef((t) => pssaProducts(t, t, D4, 1, 'zeros'), [x]);
    const n = runRef((t) => shiftedNeighbours(t, D4, 1, 'zeros'), [x]);
    const xs = x.toFloat64();
    for (let c = 0; c < 2; c++) for (let k = 0; k < 4; k++) for (let q = 0; q < 12; q++) {
      expect(p.data[(c * 4 + k) * 12 + q]).toBe(xs[c * 12 + q]! * n.data[(c * 4 + k) * 12 + q]!);
    }
  });
});

// ------------------------------------------------ §8.3 dynamic convolution

/** BN in eval mode as y = x·scale + shift. */
function affine(bn: BatchNorm2d) {
  const [g, b, m, v] = [bn.weight, bn.bias, bn.running_mean, bn.running_var].map((p) => p.data.toFloat64()) as Float64Array[];
  const scale = g!.map((gi, i) => gi / Math.sqrt(v![i]! + bn.eps));
  return { scale, shift: b!.map((bi, i) => bi - m![i]! * scale[i]!) };
}

/**
 * The paper's merged operator, built explicitly: at each output pixel p a 3×3
 * kernel W_c' + K_p with K_p[o, c, δ_k] = W_a'[o, c·D + k] · x[c, p] on the 8
 * off-centre taps (spec §4.4), BNs folded per branch.
 */
function dynamicConvReference(m: XVolution, input: NDArray): { shape: number[]; data: Float64Array } {
  const [bsz, cin, h, w] = input.shape as [number, number, number, number];
  const x = f32(input).toFloat64();
  const s = m.stride;
  const [ho, wo] = [Math.floor((h - 1) / s) + 1, Math.floor((w - 1) / s) + 1];
  const cout = m.outChannels;
  const wc = m.conv.weight.data.toFloat64();
  const wa = m.attn!.weight.data.toFloat64();
  const c = affine(m.conv_bn!);
  const a = affine(m.attn_bn!);
  const at = (b: number, ch: number, i: number, j: number) => (i < 0 || i >= h || j < 0 || j >= w ? 0 : x[((b * cin + ch) * h + i) * w + j]!);
  const out = new Float64Array(bsz * cout * ho * wo);
  for (let b = 0; b < bsz; b++) for (let o = 0; o < cout; o++) for (let i = 0; i < ho; i++) for (let j = 0; j < wo; j++) {
    let acc = c.shift[o]! + a.shift[o]!;
    for (let ch = 0; ch < cin; ch++) {
      const centre = at(b, ch, i * s, j * s);
      for (let t = 0; t < 9; t++) {
        const [ky, kx] = [Math.floor(t / 3), t % 3];
        let tap = wc[((o * cin + ch) * 3 + ky) * 3 + kx]! * c.scale[o]!;
        if (t !== 4) tap += wa[o * cin * 8 + ch * 8 + (t < 4 ? t : t - 1)]! * a.scale[o]! * centre;
        acc += tap * at(b, ch, i * s + ky - 1, j * s + kx - 1);
      }
    }
    out[((b * cout + o) * ho + i) * wo + j] = acc;
  }
  return { shape: [bsz, cout, ho, wo], data: out };
}

describe('§8.3 dynamic-convolution equivalence (L = 1, D8, full, no embedding)', () => {
  for (const stride of [1, 2]) {
    it(`stride ${stride}: two-branch output equals the per-pixel 3×3 kernel W_c + K_p`, async () => {
      const m = new XVolution(3, 4, { rng: new Rng(stride), stride });
      perturbBatchNorms(m, 10 + stride);
      const x = randn([2, 3, 5, 6], 20 + stride);
      const ref = dynamicConvReference(m, x);
      const got = await forward(m, x);
      expect(got.shape).toEqual(ref.shape);
      expectClose(got.toFloat64(), ref.data, 1e-12, 'reference interpreter vs explicit dynamic conv');
      expectClose((await forward(m, x, 'ort')).toFloat64(), ref.data, 1e-5, 'ONNX Runtime vs explicit dynamic conv');
    });
  }
});

// ------------------------------------------------------ §8.4 stride

describe('§8.4 stride equivalence', () => {
  const cases: [number, 'zeros' | 'circular', number][] = [[2, 'zeros', 1], [3, 'zeros', 2], [2, 'circular', 1]];
  for (const [stride, fill, shift] of cases) {
    it(`PSSA at full resolution then subsampled by ${stride} equals PSSA at (s·i, s·j) (${fill}, L = ${shift})`, () => {
      const x = randn([2, 3, 7, 6], 30 + stride);
      const full = runRef((t) => sampleGrid(pssaProducts(t, t, D8, shift, fill), stride), [x]);
      const strided = runRef((t) => pssaProducts(sampleGrid(t, stride), t, D8, shift, fill, stride), [x]);
      expect(strided.shape).toEqual(full.shape);
      expect(strided.shape).toEqual([2, 24, Math.floor(6 / stride) + 1, Math.floor(5 / stride) + 1]);
      expect(maxAbsDiff(strided.data, full.data)).toBe(0);
    });
  }
  it('the strided module matches the conv output grid: H′ = ⌊(H − 1)/s⌋ + 1 in both branches', async () => {
    for (const weighting_kernel of [1, 3] as const) {
      const m = new XVolution(3, 5, { rng: new Rng(3), stride: 2, weighting_kernel });
      const y = await forward(m, randn([1, 3, 7, 8], 4));
      expect(y.shape).toEqual([1, 5, 4, 4]);
    }
  });
});

// ------------------------------------------------------- §8.5 folding

describe('§8.5 BN folding: folded and unfolded outputs match', () => {
  const cases: [string, number, number, ConstructorParameters<typeof XVolution>[2]][] = [
    ['full 1×1 weighting, stride 2', 4, 6, { rng: new Rng(1), stride: 2 }],
    ['full 3×3 weighting, stride 2, D4 + centre, L = 2, circular', 4, 6, { rng: new Rng(2), stride: 2, weighting_kernel: 3, directions: 'D4', include_center: true, shift: 2, fill: 'circular' }],
    ['depthwise weighting', 5, 5, { rng: new Rng(3), weighting: 'depthwise' }],
    ['depthwise 3×3 weighting, stride 2', 5, 5, { rng: new Rng(4), weighting: 'depthwise', weighting_kernel: 3, stride: 2 }],
    ['no weighting (sum of products)', 5, 5, { rng: new Rng(5), weighting: 'none', stride: 2 }],
    ['q/k embeddings, custom directions', 4, 3, { rng: new Rng(6), embed: 'qk', directions: [[0, 2], [-1, 1], [2, 0]] }],
  ];
  for (const [name, cin, cout, args] of cases) {
    it(name, async () => {
      const m = new XVolution(cin, cout, args);
      perturbBatchNorms(m, 40);
      const folded = m.fold();
      expect(folded.isFolded).toBe(true);
      expect(folded.namedModules().some(([, mm]) => mm instanceof BatchNorm2d)).toBe(false);
      const x = randn([2, cin, 7, 6], 41);
      const [a, b] = [await forward(m, x), await forward(folded, x)];
      expect(b.shape).toEqual(a.shape);
      expectClose(b.toFloat64(), a.toFloat64(), 1e-6, 'folded vs unfolded');
    });
  }
  it('SA branch, stride 2', async () => {
    const m = new XVolutionSA(8, 16, { rng: new Rng(7), stride: 2, sa_head_dim: 4 });
    perturbBatchNorms(m, 42);
    const x = randn([2, 8, 6, 5], 43);
    expectClose((await forward(m.fold(), x)).toFloat64(), (await forward(m, x)).toFloat64(), 1e-6, 'folded vs unfolded');
  });
  it('folding twice is refused', () => {
    expect(() => new XVolution(2, 2, { rng: new Rng(0) }).fold().fold()).toThrow(ConfigError);
  });
});

// ------------------------------------------------------------ §8.6 SA

/** Naive O(N²) multi-head attention in plain loops: [B, C, Hq·Wq] queries over [B, C, N] keys/values. */
function naiveAttention(q: NDArray, k: NDArray, v: NDArray, heads: number): Float64Array {
  const [b, c, hq, wq] = q.shape as [number, number, number, number];
  const n = k.shape[2]! * k.shape[3]!;
  const nq = hq * wq;
  const [qd, kd, vd] = [q, k, v].map((t) => t.toFloat64()) as [Float64Array, Float64Array, Float64Array];
  const hd = c / heads;
  const out = new Float64Array(b * c * nq);
  for (let bb = 0; bb < b; bb++) for (let h = 0; h < heads; h++) for (let i = 0; i < nq; i++) {
    const logits = Array.from({ length: n }, (_, j) => {
      let s = 0;
      for (let d = 0; d < hd; d++) s += qd[(bb * c + h * hd + d) * nq + i]! * kd[(bb * c + h * hd + d) * n + j]!;
      return s / Math.sqrt(hd);
    });
    const mx = Math.max(...logits);
    const e = logits.map((l) => Math.exp(l - mx));
    const z = e.reduce((a, x) => a + x, 0);
    for (let d = 0; d < hd; d++) out[(bb * c + h * hd + d) * nq + i] = e.reduce((a, x, j) => a + (x / z) * vd[(bb * c + h * hd + d) * n + j]!, 0);
  }
  return out;
}

describe('§8.6 SA variant: chunked attention equals naive attention', () => {
  const q = randn([2, 8, 3, 2], 50, 2);
  const k = randn([2, 8, 5, 6], 51, 2);
  const v = randn([2, 8, 5, 6], 52);
  const naive = naiveAttention(q, k, v, 2);
  for (const chunk of [Infinity, 30, 7, 1]) {
    it(`chunk ${chunk} (N = 30 keys)`, () => {
      const got = runRef((a, b, c) => globalAttention(a, b, c, 2, chunk), [q, k, v]);
      expect(got.shape).toEqual([2, 8, 3, 2]);
      expectClose(got.data, naive, 1e-12, `chunk ${chunk} vs naive loops`);
    });
  }
  it('the module gives the same output for any sa_chunk', async () => {
    const x = randn([1, 4, 6, 6], 53);
    const build = (sa_chunk: number) => {
      const m = new XVolutionSA(4, 8, { rng: new Rng(9), stride: 2, sa_head_dim: 4, sa_chunk });
      perturbBatchNorms(m, 54);
      return m;
    };
    const whole = await forward(build(1024), x);
    expect(whole.shape).toEqual([1, 8, 3, 3]);
    expectClose((await forward(build(5), x)).toFloat64(), whole.toFloat64(), 1e-12, 'sa_chunk 5 vs one chunk');
  });
});

// ------------------------------------------------------- §8.7 dtype

describe('§8.7 dtype: products stay float32 and finite beyond the fp16 range', () => {
  it('every value of the traced operator is float32; products of 300-sized activations (9e4 > 65504) stay finite', async () => {
    const m = new XVolution(3, 4, { rng: new Rng(11) }).nameParameters().eval();
    const traced = trace((x) => m.call(x), [{ dtype: 'float32', shape: [1, 3, 5, 5] }]);
    const dtypes = new Set(traced.graph.nodes.flatMap((n) => n.outputs.map((o) => o.dtype)));
    expect([...dtypes]).toEqual(['float32']);
    const x = randn([1, 3, 5, 5], 12, 300);
    const p = runRef((t) => pssaProducts(t, t, D8, 1, 'zeros'), [x]);
    expect(maxAbs(p.data)).toBeGreaterThan(65504);
    const y = await forward(m, x, 'ort');
    expect(y.toFloat64().every(Number.isFinite)).toBe(true);
  });
});

// ---------------------------------------------- per-op gradient checks

describe('gradient checks of the composites (ORT vs reference, finite differences)', () => {
  it('PSSA products (zero fill, stride 2) → full 1×1 weighting', async () => {
    await checkOp({
      fn: (x, w) => conv2d(pssaProducts(sampleGrid(x, 2), x, D8, 1, 'zeros', 2), w),
      inputs: [randn([1, 2, 5, 4], 60), randn([3, 16, 1, 1], 61, 0.3)],
    });
  });
  it('PSSA products with q/k maps, circular fill, L = 2, centre tap', async () => {
    await checkOp({
      fn: (q, k) => pssaProducts(q, k, [...D4, [0, 0]], 2, 'circular'),
      inputs: [randn([1, 2, 4, 5], 62), randn([1, 2, 4, 5], 63)],
    });
  });
  it('chunked global attention (online softmax over 3 uneven chunks)', async () => {
    await checkOp({
      fn: (q, k, v) => globalAttention(q, k, v, 2, 3),
      inputs: [randn([1, 4, 2, 2], 64), randn([1, 4, 2, 4], 65), randn([1, 4, 2, 4], 66)],
      rtol: 2e-5,
    });
  });
});

// --------------------------------- registry: parameters and key names

/** The spec's table (§6.1, §6.3): the defaults of each variant. */
const SPEC_PARAMS: Record<string, number> = {
  xvolution_resnet34: 27_833_128,
  xvolution_resnet34_dw: 22_088_488,
  xvolution_resnet34_sa: 24_863_528,
  xvolution_resnet50: 28_705_832,
  xvolution_resnet50_dw: 25_572_392,
  xvolution_resnet50_sa: 27_139_112,
};

const built = new Map<string, ResNet>();
function model(name: string): ResNet {
  if (!built.has(name)) built.set(name, createModel(name) as ResNet);
  return built.get(name)!;
}

const keysOf = (m: Module, prefix: string) => [...m.stateDict()].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => `${k} ${v.dtype} [${v.shape.join(', ')}]`);
const bn = (p: string, n: number) => ['weight', 'bias', 'running_mean', 'running_var'].map((s) => `${p}.${s} float32 [${n}]`).concat(`${p}.num_batches_tracked int64 []`);

describe('registered variants', () => {
  for (const [name, params] of Object.entries(SPEC_PARAMS)) {
    it(`${name}: ${params.toLocaleString('en-US')} parameters (spec table)`, () => {
      expect(model(name).numParams()).toBe(params);
      expect(getVariant(name).pretrained.weights).toBeUndefined();
    });
  }

  it('xvolution_resnet50: layer3 blocks carry the proposed keys; the host bn2 is gone; other stages are plain', () => {
    expect(keysOf(model('xvolution_resnet50'), 'layer3.0.')).toEqual([
      'layer3.0.conv1.weight float32 [256, 512, 1, 1]',
      ...bn('layer3.0.bn1', 256),
      'layer3.0.conv2.conv.weight float32 [256, 256, 3, 3]',
      ...bn('layer3.0.conv2.conv_bn', 256),
      'layer3.0.conv2.attn.weight float32 [256, 2048, 1, 1]',
      ...bn('layer3.0.conv2.attn_bn', 256),
      'layer3.0.conv3.weight float32 [1024, 256, 1, 1]',
      ...bn('layer3.0.bn3', 1024),
      'layer3.0.downsample.0.weight float32 [1024, 512, 1, 1]',
      ...bn('layer3.0.downsample.1', 1024),
    ]);
    const m = model('xvolution_resnet50') as XResNet;
    expect(m.xvolutions().map(([p]) => p)).toEqual([0, 1, 2, 3, 4, 5].map((i) => `layer3.${i}.conv2`));
  });

  it('xvolution_resnet34_dw: the strided 128 → 256 conv falls back to full weighting, the others are depthwise', () => {
    const keys = keysOf(model('xvolution_resnet34_dw'), 'layer3.');
    expect(keys).toContain('layer3.0.conv1.attn.weight float32 [256, 1024, 1, 1]');
    expect(keys).toContain('layer3.0.conv2.attn.weight float32 [256, 8, 1, 1]');
    expect(keys).toContain('layer3.5.conv2.attn.weight float32 [256, 8, 1, 1]');
    expect(keys.filter((k) => k.includes('.bn1.') || k.includes('.bn2.'))).toEqual([]);
    expect((model('xvolution_resnet34_dw') as XResNet).xvolutions()).toHaveLength(12);
  });

  it('xvolution_resnet34_sa: the SA keys', () => {
    expect(keysOf(model('xvolution_resnet34_sa'), 'layer3.0.conv1.')).toEqual([
      'layer3.0.conv1.conv.weight float32 [256, 128, 3, 3]',
      ...bn('layer3.0.conv1.conv_bn', 256),
      'layer3.0.conv1.sa_q.weight float32 [256, 128, 1, 1]',
      'layer3.0.conv1.sa_q.bias float32 [256]',
      'layer3.0.conv1.sa_k.weight float32 [256, 128, 1, 1]',
      'layer3.0.conv1.sa_k.bias float32 [256]',
      'layer3.0.conv1.sa_v.weight float32 [256, 128, 1, 1]',
      'layer3.0.conv1.sa_v.bias float32 [256]',
      'layer3.0.conv1.sa_proj.weight float32 [256, 256, 1, 1]',
      'layer3.0.conv1.sa_proj.bias float32 [256]',
      ...bn('layer3.0.conv1.attn_bn', 256),
    ]);
  });

  it('q/k embedding keys and replace_strided / stages options', () => {
    const m = createModel('xvolution_resnet', { block: 'basic', layers: [1, 1, 2, 1], embed: 'qk', replace_strided: false, stages: [3, 4], num_classes: 10 }) as XResNet;
    expect(m.xvolutions().map(([p]) => p)).toEqual(['layer3.0.conv2', 'layer3.1.conv1', 'layer3.1.conv2', 'layer4.0.conv2']);
    expect(keysOf(m, 'layer3.1.conv1.').filter((k) => k.includes('attn'))).toEqual([
      'layer3.1.conv1.attn.weight float32 [256, 2048, 1, 1]',
      'layer3.1.conv1.attn_q.weight float32 [256, 256, 1, 1]',
      'layer3.1.conv1.attn_q.bias float32 [256]',
      'layer3.1.conv1.attn_k.weight float32 [256, 256, 1, 1]',
      'layer3.1.conv1.attn_k.bias float32 [256]',
      ...bn('layer3.1.conv1.attn_bn', 256),
    ]);
  });

  it('pretrained config: the torchvision evaluation pipeline, no weights', () => {
    const p = getVariant('xvolution_resnet50').pretrained;
    expect(p).toMatchObject({ inputSize: [3, 224, 224], interpolation: 'bilinear', cropPct: 0.875, numClasses: 1000 });
    expect(getVariant('xvolution_resnet50').description).toMatch(/No weights published/);
  });
});

// -------------------------------------------------- §8.1 identity

describe('§8.1 identity reduction: an X-ResNet initialised from a torchvision checkpoint reproduces its logits', () => {
  for (const host of ['resnet34', 'resnet50']) {
    it(`${host} → xvolution_${host}`, async () => {
      const base = model(host);
      perturbBatchNorms(base, 70);
      const xr = model(`xvolution_${host}`) as XResNet;
      const sd = xresnetCheckpointFilter(base.stateDict(), xr);
      xr.loadStateDict(sd); // strict: every key mapped
      for (const [p] of xr.xvolutions()) {
        expect(xr.stateDict().get(`${p}.attn_bn.weight`)!.toFloat64().every((v) => v === 0)).toBe(true);
        expect(sd.get(`${p}.conv.weight`)).toBe(base.stateDict().get(`${p}.weight`));
      }
      const x = randn([2, 3, 32, 32], 71);
      const [ref, got] = [await forward(base, x, 'ort'), await forward(xr, x, 'ort')];
      expect(got.shape).toEqual([2, 1000]);
      expect(got.toFloat64().every(Number.isFinite)).toBe(true);
      expectClose(got.toFloat64(), ref.toFloat64(), 1e-4, `${host} logits`);
    });
  }
});

// -------------------------------------------- small forwards, bad input

describe('small forwards', () => {
  const tiny = (over: Partial<XResNetConfig>) => createModel('xvolution_resnet', { block: 'basic', layers: [1, 1, 1, 1], num_classes: 7, ...over }, { seed: 1 });
  const variants: [string, Partial<XResNetConfig>][] = [
    ['PSSA full', {}],
    ['PSSA depthwise 3×3, q/k, circular', { weighting: 'depthwise', weighting_kernel: 3, embed: 'qk', fill: 'circular' }],
    ['PSSA none (sum)', { weighting: 'none', include_center: true }],
    ['SA', { branch: 'sa', sa_chunk: 2 }],
  ];
  for (const [name, over] of variants) {
    it(`${name}: logits [2, 7], finite, at 24×24`, async () => {
      const m = tiny(over);
      perturbBatchNorms(m, 80);
      const y = await forward(m, randn([2, 3, 24, 24], 81), 'ort');
      expect(y.shape).toEqual([2, 7]);
      expect(y.toFloat64().every(Number.isFinite)).toBe(true);
    });
  }

  it('model-level fold() gives the same logits with no BN left in any X-volution', async () => {
    const m = tiny({ embed: 'qk' }) as XResNet;
    perturbBatchNorms(m, 82);
    const folded = m.fold();
    expect(folded.xvolutions().every(([, xv]) => xv.isFolded)).toBe(true);
    const x = randn([1, 3, 20, 20], 83);
    expectClose((await forward(folded, x)).toFloat64(), (await forward(m, x)).toFloat64(), 1e-6, 'folded model');
  });

  it('activations are recorded under the module paths', async () => {
    const m = tiny({}).nameParameters().eval();
    const { activations } = await runModule(m, f32(randn([1, 3, 16, 16], 84)), { activations: ['layer3.0.conv1:out', 'layer3.0.conv1.attn:out', 'layer3.0.conv1.attn_bn:out'] });
    expect(activations.get('layer3.0.conv1:out')!.shape).toEqual([1, 256, 1, 1]);
    expect(activations.get('layer3.0.conv1.attn:out')!.shape).toEqual([1, 256, 1, 1]);
  });

  it('wrong input channels raise a ShapeError naming the module', () => {
    const m = tiny({}).nameParameters().eval();
    expect(() => trace((x) => m.call(x), [{ dtype: 'float32', shape: [1, 4, 16, 16] }])).toThrow(ShapeError);
    expect(() => trace((x) => m.call(x), [{ dtype: 'float32', shape: [1, 4, 16, 16] }])).toThrow(/module 'conv1'/);
    const xv = new XVolution(3, 4, { rng: new Rng(0) });
    const host = tiny({}) as XResNet;
    (host.blocks()[2] as BasicBlock).conv1 = xv;
    host.nameParameters();
    expect(() => trace((x) => host.call(x), [{ dtype: 'float32', shape: [1, 3, 16, 16] }])).toThrow(/module 'layer3\.0\.conv1\.conv'/);
  });

  it('bad options raise a ConfigError', () => {
    expect(() => new XVolution(3, 4, { rng: new Rng(0), weighting: 'depthwise' })).toThrow(/needs in = out channels/);
    expect(() => new XVolution(4, 4, { rng: new Rng(0), weighting: 'none', weighting_kernel: 3 })).toThrow(ConfigError);
    expect(() => new XVolution(4, 4, { rng: new Rng(0), shift: 0 })).toThrow(/shift/);
    expect(() => new XVolution(4, 4, { rng: new Rng(0), directions: [[0, 1], [0, 1]] })).toThrow(/twice/);
    expect(() => new XVolution(4, 4, { rng: new Rng(0), directions: [[0, 0]] })).toThrow(/include_center/);
    expect(() => tiny({ stages: [5] })).toThrow(ConfigError);
    expect(() => createModel('xvolution_resnet50', { no_such_option: 1 })).toThrow(ConfigError);
  });
});

// ------------------------------------------------------ metadata

describe('options in checkpoint metadata', () => {
  let config: XResNetConfig;
  beforeAll(() => {
    config = createModel('xvolution_resnet', { block: 'basic', layers: [1, 1, 1, 1], num_classes: 3 }).config as XResNetConfig;
  });

  it('round-trips through a safetensors file and checks against the config', () => {
    const file = writeSafetensors(new Map([['x', NDArray.float32([1], [0])]]), xvolutionMetadata(config));
    const { metadata } = readSafetensors(file);
    const record = checkXVolutionMetadata(metadata, config);
    expect(record.directions).toEqual(D8.map((d) => [...d]));
    expect(record).toMatchObject({ format: 1, branch: 'pssa', shift: 1, weighting: 'full', stages: [3], replace_strided: true });
    // 'D8' and the explicit D8 list are the same layout.
    expect(() => checkXVolutionMetadata(metadata, { ...config, directions: D8 })).not.toThrow();
  });

  it('names every option that differs', () => {
    const metadata = xvolutionMetadata(config);
    expect(() => checkXVolutionMetadata(metadata, { ...config, weighting: 'depthwise', shift: 2 })).toThrow(/shift: checkpoint 1, config 2; weighting: checkpoint "full", config "depthwise"/);
    expect(() => checkXVolutionMetadata(metadata, { ...config, directions: [...D8].reverse() })).toThrow(/directions/);
  });

  it('refuses a checkpoint without the record', () => {
    expect(() => checkXVolutionMetadata({}, config)).toThrow(/cannot be recovered from tensor shapes/);
  });
});
