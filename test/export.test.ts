import { describe, expect, it } from 'vitest';
import { compile } from '../src/backends/compile.js';
import { OrtSession } from '../src/backends/ort/session.js';
import { createInferenceRunner, exportInference, maxRelativeDifference } from '../src/backends/passes/export.js';
import { foldBatchNorm } from '../src/backends/passes/fold_bn.js';
import { foldConvResidual } from '../src/backends/passes/fold_residual.js';
import { fuseAttention } from '../src/backends/passes/fuse_attention.js';
import { tokenLayout } from '../src/backends/passes/token_layout.js';
import type { ParamGraph } from '../src/backends/passes/rewrite.js';
import { fromRef, interpret } from '../src/backends/reference/interpreter.js';
import { ConfigError } from '../src/errors.js';
import { countMacs, macsByScope, stageOf } from '../src/ir/analysis.js';
import type { Value } from '../src/ir/graph.js';
import { NDArray } from '../src/ir/ndarray.js';
import { Attention, BatchNorm2d, Conv2d, Linear } from '../src/nn/layers.js';
import { UniFormerAttention } from '../src/models/uniformer.js';
import { Module } from '../src/nn/module.js';
import { Rng } from '../src/rng.js';
import { paramValues, trace } from '../src/tensor/function.js';
import { Parameter, type Tensor, concat, constant, conv2d, convTranspose2d } from '../src/tensor/tensor.js';

function randn(rng: Rng, shape: readonly number[], scale = 1, offset = 0): NDArray<'float32'> {
  const a = NDArray.float32(shape);
  for (let i = 0; i < a.size; i++) a.data[i] = offset + scale * rng.normal();
  return a;
}

/** A BatchNorm with non-trivial statistics, so that folding it changes the weights. */
function batchNorm(rng: Rng, c: number): BatchNorm2d {
  const bn = new BatchNorm2d(c);
  bn.weight.data = randn(rng, [c], 0.2, 1);
  bn.bias.data = randn(rng, [c], 0.1);
  bn.running_mean.data = randn(rng, [c], 0.1);
  const v = NDArray.float32([c]);
  for (let i = 0; i < c; i++) v.data[i] = 0.5 + rng.uniform();
  bn.running_var.data = v;
  return bn;
}

/**
 * conv → BN (folded), bias-free conv → BN (folded), a conv whose output also feeds a residual → BN (kept),
 * BN → grouped 1×1 conv (folded into the conv after it), BN → padded 3×3 conv (kept), pool, class token, head.
 */
class TinyNet extends Module {
  cls_token: Parameter;
  stem: Conv2d;
  stem_bn: BatchNorm2d;
  conv: Conv2d;
  bn: BatchNorm2d;
  branch: Conv2d;
  branch_bn: BatchNorm2d;
  pre_bn: BatchNorm2d;
  proj: Conv2d;
  pad_bn: BatchNorm2d;
  padded: Conv2d;
  head: Linear;

  constructor(rng: Rng) {
    super();
    this.cls_token = new Parameter(randn(rng, [1, 1, 8]));
    this.stem = new Conv2d(3, 8, 3, { rng, padding: 1, stride: 2 });
    this.stem_bn = batchNorm(rng, 8);
    this.conv = new Conv2d(8, 8, 3, { rng, padding: 1, bias: false });
    this.bn = batchNorm(rng, 8);
    this.branch = new Conv2d(8, 8, 1, { rng });
    this.branch_bn = batchNorm(rng, 8);
    this.pre_bn = batchNorm(rng, 8);
    this.proj = new Conv2d(8, 8, 1, { rng, groups: 2 });
    this.pad_bn = batchNorm(rng, 8);
    this.padded = new Conv2d(8, 8, 3, { rng, padding: 1 });
    this.head = new Linear(8, 5, { rng });
  }

  forward(x: Tensor): Tensor {
    const b = x.dim(0);
    let y = this.stem_bn.call(this.stem.call(x)).relu();
    y = this.bn.call(this.conv.call(y)).relu();
    const z = this.branch.call(y);
    y = this.branch_bn.call(z).add(z);
    y = this.proj.call(this.pre_bn.call(y)).relu();
    y = this.padded.call(this.pad_bn.call(y));
    const tokens = y.flatten(2).transpose(1, 2);
    const all = concat([this.cls_token.expand(b, -1, -1), tokens], 1);
    return this.head.call(all.mean(1).reshape(b, -1));
  }
}

function tinyNet(): TinyNet {
  return new TinyNet(new Rng(7)).nameParameters().eval();
}

function run(g: ParamGraph, x: NDArray): NDArray {
  const feeds = new Map<Value, NDArray>(g.params);
  feeds.set(g.graph.inputs.find((v) => v.role === 'input')!, x);
  return fromRef(interpret(g.graph, feeds)[0]!, 'float64');
}

describe('foldBatchNorm', () => {
  const model = tinyNet();
  const traced = trace((x) => model.call(x), [{ dtype: 'float32', shape: [2, 3, 16, 16], name: 'input' }]);
  const source: ParamGraph = { graph: traced.graph, params: paramValues(traced) };
  const folded = foldBatchNorm(source);

  it('folds conv → BN unless the conv output has another use, and BN → conv unless the conv pads', () => {
    expect(folded.folded).toBe(3);
    const bns = folded.graph.liveNodes().filter((n) => n.op === 'batch_norm');
    expect(bns.map((n) => n.scope)).toEqual(['branch_bn', 'pad_bn']);
    const names = [...folded.params.keys()].map((v) => v.name);
    expect(names).not.toContain('stem_bn.running_mean');
    expect(names).not.toContain('pre_bn.running_mean');
    expect(names).toContain('conv.bias');
  });

  it('computes the same function', () => {
    const x = randn(new Rng(1), [2, 3, 16, 16]);
    expect(maxRelativeDifference(run(folded, x), run(source, x))).toBeLessThan(1e-6);
  });
});

/** Traces `fn` over the parameters it uses, for the graph passes. */
function traced(fn: (x: Tensor) => Tensor, shape: readonly number[]): ParamGraph {
  const t = trace(fn, [{ dtype: 'float32', shape, name: 'input' }]);
  return { graph: t.graph, params: paramValues(t) };
}

describe('foldConvResidual', () => {
  const rng = new Rng(3);
  const dw = (name: string, k: number) => new Parameter(randn(rng, [8, 1, k, k], 0.3), { name });
  const w3 = dw('w3', 3);
  const w5 = dw('w5', 5);
  const wShared = dw('shared', 3);
  const wStrided = dw('strided', 3);
  const wDense = new Parameter(randn(rng, [8, 8, 3, 3], 0.1), { name: 'dense' });
  const bias = new Parameter(randn(rng, [8], 0.1), { name: 'bias' });
  const source = traced((x) => {
    let y = x.add(conv2d(x, w3, bias, { padding: 1, groups: 8 })); // folds
    y = conv2d(y, w5, undefined, { padding: 4, dilation: 2, groups: 8 }).add(y); // folds: dilated, centred, either order
    y = y.add(conv2d(y, wDense, undefined, { padding: 1 })); // dense conv: kept
    const shared = conv2d(y, wShared, undefined, { padding: 1, groups: 8 });
    y = y.add(shared).mul(shared); // the conv's output has another use: kept
    const down = conv2d(y, wStrided, undefined, { padding: 1, stride: 2, groups: 8 });
    return down.add(y.slice(2, 0, 8, 2).slice(3, 0, 8, 2)); // strided: not a residual of its own input
  }, [2, 8, 8, 8]);
  const folded = foldConvResidual(source);

  it('folds x + dwconv(x) for centred stride-1 depthwise convs only', () => {
    expect(folded.folded).toBe(2);
    const count = (g: ParamGraph, op: string) => g.graph.liveNodes().filter((n) => n.op === op).length;
    expect(count(folded, 'add')).toBe(count(source, 'add') - 2);
    expect(count(folded, 'conv2d')).toBe(count(source, 'conv2d'));
    // the centre tap gained one, the others are unchanged
    const w = [...folded.params].find(([v]) => v.name === w3.name)![1];
    expect(w.get(4) - w3.data.get(4)).toBeCloseTo(1, 6);
    expect(w.get(3)).toBe(w3.data.get(3));
  });

  it('computes the same function', () => {
    const x = randn(new Rng(1), [2, 8, 8, 8]);
    expect(maxRelativeDifference(run(folded, x), run(source, x))).toBeLessThan(1e-6);
  });
});

describe('tokenLayout', () => {
  const rng = new Rng(4);
  const w = new Parameter(randn(rng, [6, 6], 0.3), { name: 'w' });
  const source = traced((x) => {
    const tokens = x.flatten(2).transpose(1, 2); // map → tokens
    const map = tokens.matmul(w).transpose(1, 2).reshape(2, 6, 4, 5); // tokens → map
    return map.relu().reshape(2, 6, 20).transpose(1, 2).reshape(2, 6, 20); // a chain of three: the first two pair up
  }, [2, 6, 4, 5]);
  const rewritten = tokenLayout(source);

  it('moves map ↔ token transposes next to the map', () => {
    expect(rewritten.rewritten).toBe(3);
    const perms = rewritten.graph.liveNodes().filter((n) => n.op === 'transpose').map((n) => (n.attrs.perm as number[]).join(''));
    expect(perms).toEqual(['0231', '0312', '0231']);
  });

  it('computes the same function', () => {
    const x = randn(new Rng(2), [2, 6, 4, 5]);
    expect(maxRelativeDifference(run(rewritten, x), run(source, x))).toBe(0);
  });
});

describe('fuseAttention', () => {
  class Attentions extends Module {
    readonly rng = new Rng(5);
    timm = new Attention(8, { rng: this.rng, heads: 2, qkvBias: true }); // (q·scale)·kᵀ, qkv bias
    official = new UniFormerAttention(8, { rng: this.rng, heads: 4, qkvBias: false, qkScale: null, attnDrop: 0, projDrop: 0 }); // (q·kᵀ)·scale, no bias
    kept = new UniFormerAttention(8, { rng: this.rng, heads: 2, qkvBias: true, qkScale: 0.5, attnDrop: 0, projDrop: 0 });
    forward(x: Tensor): Tensor {
      const y = this.official.call(this.timm.call(x));
      const { out, attn } = this.kept.attend(y); // its probabilities are used again: not fused
      return out.add(attn.mean(1).matmul(y));
    }
  }
  const model = new Attentions().nameParameters().eval();
  const source = traced((x) => model.call(x), [2, 5, 8]);
  const fused = fuseAttention(source);

  it('fuses both scale placements, with and without a qkv bias, and leaves attention whose probabilities are reused', () => {
    expect(fused.fused).toBe(2);
    const nodes = fused.graph.liveNodes();
    expect(nodes.filter((n) => n.op === 'self_attention').map((n) => n.attrs.heads)).toEqual([2, 4]);
    expect(nodes.filter((n) => n.op === 'softmax')).toHaveLength(1);
    expect([...fused.params.keys()].map((v) => v.name).filter((n) => n.includes('zero_bias'))).toHaveLength(1);
  });

  it('computes the same function', () => {
    const x = randn(new Rng(6), [2, 5, 8]);
    expect(maxRelativeDifference(run(fused, x), run(source, x))).toBeLessThan(1e-6);
  });

  it('is used by in-process runners only: exported files stay standard ONNX', () => {
    const fn = (x: Tensor) => model.official.call(model.timm.call(x));
    const op = (contribOps: boolean) => exportInference(fn, [5, 8], { contribOps }).graph.graph.liveNodes().filter((n) => n.op === 'self_attention').length;
    expect([op(true), op(false)]).toEqual([2, 0]);
  });

  it('runs in compile() with baked weights: the same values as the reference, each input fed where it belongs', async () => {
    const fn = (x: Tensor | undefined, s: Tensor | undefined) => model.official.call(model.timm.call(x!)).mul(s!);
    const [x, s] = [randn(new Rng(7), [2, 5, 8]), randn(new Rng(8), [2, 5, 8])];
    const fast = compile(fn, { threads: 1 });
    const [y] = await fast(x, s);
    await fast.release();
    const [ref] = await compile(fn, { backend: 'reference' })(x, s);
    expect(maxRelativeDifference(y!, ref!.astype('float32'))).toBeLessThan(1e-5);
  });
});

describe('countMacs', () => {
  it('counts conv, transposed conv and matmul multiply-accumulates only', () => {
    const w = new Parameter(NDArray.float32([8, 1, 3, 3]), { name: 'w' });
    const wt = new Parameter(NDArray.float32([8, 4, 2, 2]), { name: 'wt' });
    const m = new Parameter(NDArray.float32([64, 6]), { name: 'm' });
    const { graph } = trace(
      (x) => {
        const grouped = conv2d(x, w, undefined, { padding: 1, groups: 4 });
        return [grouped.relu().reshape(2, 8, 64).matmul(m), convTranspose2d(grouped, wt, undefined, { stride: 2 })];
      },
      [{ dtype: 'float32', shape: [2, 4, 8, 8] }],
    );
    // grouped conv: N·Cout·Ho·Wo·(Cin/g)·kh·kw = 2·8·8·8·1·3·3; matmul: batch·m·n·k = 2·8·6·64;
    // transposed conv: N·Cin·Hi·Wi·(Cout/g)·kh·kw = 2·8·8·8·4·2·2
    expect(countMacs(graph)).toBe(2 * 8 * 64 * 9 + 2 * 8 * 6 * 64 + 2 * 8 * 64 * 16);
  });

  it('groups by stage', () => {
    expect(stageOf('blocks1.0.attn')).toBe('blocks1');
    expect(stageOf('layers.2.blocks.1.attn')).toBe('layers.2');
    expect(stageOf('layer3.0.conv1')).toBe('layer3');
    expect(stageOf('blocks.11.mlp')).toBe('blocks.11');
    expect(stageOf('head')).toBe('head');
    expect(stageOf('')).toBe('');
    const model = tinyNet();
    const { graph } = trace((x) => model.call(x), [{ dtype: 'float32', shape: [1, 3, 16, 16] }]);
    const byScope = macsByScope(graph);
    expect(byScope.map((s) => s.scope)).toEqual(['stem', 'stem_bn', '', 'conv', 'bn', 'branch', 'branch_bn', 'pre_bn', 'proj', 'pad_bn', 'padded', 'head']);
    expect(byScope.find((s) => s.scope === 'stem')!.macs).toBe(8 * 8 * 8 * 3 * 9);
    expect(byScope.reduce((n, s) => n + s.macs, 0)).toBe(countMacs(graph));
  });
});

describe('exportInference', () => {
  const model = tinyNet();
  const fn = (x: Tensor) => model.call(x);
  const reference = compile(fn);

  async function check(bytes: Uint8Array, batch: number): Promise<number> {
    const x = randn(new Rng(batch), [batch, 3, 16, 16]);
    const session = await OrtSession.create(bytes);
    try {
      const out = await session.run({ input: x });
      expect(session.outputNames).toEqual(['logits']);
      return maxRelativeDifference(out.logits!, (await reference(x))[0]!);
    } finally {
      await session.release();
    }
  }

  it('exports a fixed batch with BatchNorms folded', async () => {
    const e = exportInference(fn, [3, 16, 16], { batch: 4 });
    expect(e.folded).toEqual({ batchNorms: 3, residuals: 0 });
    expect(await check(e.bytes, 4)).toBeLessThan(1e-5);
  });

  it('exports a dynamic batch that runs at any batch size', async () => {
    const e = exportInference(fn, [3, 16, 16], { batch: 'dynamic' });
    for (const batch of [1, 3, 5]) expect(await check(e.bytes, batch)).toBeLessThan(1e-5);
  });

  it('opens a runner with a dynamic batch by default: one session serves every batch size', async () => {
    const runner = await createInferenceRunner(fn, [3, 16, 16], { spinWait: false });
    try {
      expect(runner.folded.batchNorms).toBe(3);
      for (const batch of [1, 4]) {
        const x = randn(new Rng(batch), [batch, 3, 16, 16]);
        expect(maxRelativeDifference(await runner.run(x), (await reference(x))[0]!)).toBeLessThan(1e-5);
      }
    } finally {
      await runner.release();
    }
  });

  it('refuses batch-dependent code it cannot express, naming the node', () => {
    class BatchConstant extends Module {
      forward(x: Tensor): Tensor {
        const scale = NDArray.float32([x.dim(0), 1, 1, 1]);
        scale.data.fill(2);
        return x.mul(constant(scale));
      }
    }
    const m = new BatchConstant().nameParameters();
    m.path = 'scaler';
    expect(() => exportInference((x) => m.call(x), [3, 4, 4], { batch: 'dynamic' })).toThrow(ConfigError);
    expect(() => exportInference((x) => m.call(x), [3, 4, 4], { batch: 'dynamic' })).toThrow(/constant node in module 'scaler' has attribute 'value' that depends on the batch size; export with a fixed batch/);
    const branching = (x: Tensor) => (x.dim(0) > 2 ? x.relu() : x.sigmoid());
    expect(() => exportInference(branching, [3, 4, 4], { batch: 'dynamic' })).toThrow(/traced differently at batch 2 and 3/);
    expect(() => exportInference((x) => x.slice(0, 1), [3], { batch: 'dynamic' })).toThrow(/slice node has attribute 'ends' that depends/);
  });

  it('refuses a train-mode model', () => {
    const m = tinyNet().train();
    expect(() => exportInference((x) => m.call(x), [3, 16, 16])).toThrow(/eval mode/);
  });
});
