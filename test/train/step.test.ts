/**
 * Several train steps in one graph run (`TrainStep.runMany`, an ONNX Loop)
 * against the same steps run one by one: each step's forward must read the
 * weights, BatchNorm statistics, optimizer state and EMA the step before
 * assigned, and draw its own dropout noise. Within a step, the EMA reads the
 * weights the optimizer assigned, which rests on `Trace.lift` reading a
 * buffer's assigned value after an assignment (last test).
 */
import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/ir/ndarray.js';
import { BatchNorm2d, Conv2d, Dropout, Linear } from '../../src/nn/layers.js';
import { Module } from '../../src/nn/module.js';
import { Rng } from '../../src/rng.js';
import { trace } from '../../src/tensor/function.js';
import { activeTrace } from '../../src/tensor/trace.js';
import { Parameter, type Tensor } from '../../src/tensor/tensor.js';
import { ModelEma } from '../../src/train/ema.js';
import { crossEntropy } from '../../src/train/losses.js';
import { AdamW, paramGroups } from '../../src/train/optim.js';
import { TrainStep } from '../../src/train/step.js';
import { expectClose } from '../helpers/opcheck.js';

class Tiny extends Module {
  conv = new Conv2d(2, 4, 3, { rng: new Rng(1), padding: 1 });
  bn = new BatchNorm2d(4);
  drop = new Dropout(0.25);
  head = new Linear(4, 3, { rng: new Rng(2) });
  forward(x: Tensor): Tensor {
    return this.head.call(this.drop.call(this.bn.call(this.conv.call(x)).gelu().mean([2, 3])));
  }
}

function setup(withEma: boolean) {
  const model = new Tiny().nameParameters();
  const ema = withEma ? new ModelEma(model, { decay: 0.9, warmup: true }) : undefined;
  const step = new TrainStep(model, { optimizer: new AdamW(), groups: paramGroups(model.namedParameters(), 0.05), loss: crossEntropy, clipGradNorm: 1, seed: 7, ...(ema ? { ema } : {}) });
  return { model, ema, step };
}

function batches(n: number): { x: NDArray; target: NDArray; lr: number }[] {
  const rng = new Rng(3);
  return Array.from({ length: n }, (_, i) => {
    const x = NDArray.float32([4, 2, 5, 5]);
    for (let j = 0; j < x.size; j++) x.data[j] = rng.normal();
    return { x, target: NDArray.int64([4], [0, 1, 2, i % 3]), lr: 0.05 / (i + 1) };
  });
}

const values = (sd: Map<string, NDArray>) => [...sd].sort(([a], [b]) => a.localeCompare(b)).flatMap(([, v]) => Array.from(v.toFloat64()));

describe('several steps per graph run', () => {
  it('take the same steps as one step per run: losses, weights, BatchNorm statistics, optimizer state and EMA', async () => {
    const data = batches(5);
    const one = setup(true);
    const single = [];
    for (const b of data) single.push(await one.step.run(b.x, b.target, b.lr));
    const many = setup(true);
    const fused = [...(await many.step.runMany(data.slice(0, 2))), ...(await many.step.runMany(data.slice(2, 5)))];
    expect(await many.step.runMany([])).toEqual([]);
    expect(many.step.steps).toBe(5);
    expect(many.ema!.updates).toBe(5);
    expectClose(fused.map((r) => r.loss), single.map((r) => r.loss), 1e-6, 'losses');
    expectClose(fused.map((r) => r.gradNorm), single.map((r) => r.gradNorm), 1e-6, 'gradient norms');
    expectClose(Array.from(fused[3]!.logits.toFloat64()), Array.from(single[3]!.logits.toFloat64()), 1e-6, 'logits of a middle step');
    expectClose(values(many.model.stateDict()), values(one.model.stateDict()), 1e-6, 'weights and statistics');
    expect(many.model.bn.num_batches_tracked.data.get(0)).toBe(5);
    expectClose(values(many.step.opts.optimizer.stateDict()), values(one.step.opts.optimizer.stateDict()), 1e-6, 'optimizer state');
    expectClose(values(many.ema!.stateDict()), values(one.ema!.stateDict()), 1e-6, 'EMA');
    await one.step.release();
    await many.step.release();
  });

  it('a NaN in a later step of a run leaves everything as before the run and names that step', async () => {
    const { model, ema, step } = setup(true);
    const data = batches(3);
    await step.runMany(data.slice(0, 1));
    const before = values(model.stateDict());
    const emaBefore = values(ema!.stateDict());
    data[2]!.x.data[0] = NaN;
    const err = await step.runMany(data.slice(1, 3)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_NON_FINITE', step: 3 });
    expect((err as Error).message).toMatch(/loss is NaN at step 3; the parameters were left as before step 2/);
    expect(values(model.stateDict())).toEqual(before);
    expect(values(ema!.stateDict())).toEqual(emaBefore);
    expect(step.steps).toBe(1);
    expect(ema!.updates).toBe(1);
    await step.release();
  });
});

describe('weight EMA in the step graph', () => {
  it('ema ← d·ema + (1 − d)·model after every step, d warming up as min(decay, (1 + n) / (10 + n))', async () => {
    const { model, ema, step } = setup(true);
    const data = batches(3);
    let expected = new Map([...model.stateDict()].filter(([, v]) => v.dtype === 'float32').map(([k, v]) => [k, Array.from(v.toFloat64())]));
    for (const [n, b] of data.entries()) {
      await step.run(b.x, b.target, b.lr);
      const d = Math.min(0.9, (1 + n) / (10 + n));
      const now = model.stateDict();
      expected = new Map([...expected].map(([k, e]) => [k, e.map((v, i) => d * v + (1 - d) * (now.get(k)!.data[i] as number))]));
    }
    const got = ema!.stateDict();
    for (const [k, e] of expected) expectClose(Array.from(got.get(k)!.toFloat64()), e, 1e-6, k);
    // integer buffers are the model's own
    expect(got.get('bn.num_batches_tracked')!.get(0)).toBe(3);
    expect(ema!.decayAt(0)).toBeCloseTo(0.1);
    expect(ema!.decayAt(1e6)).toBe(0.9);
    await step.release();
  });
});

describe('Trace.lift after an assignment', () => {
  it("reads the assigned value, viewed in the buffer's shape", () => {
    const p = new Parameter(NDArray.float32([2, 3]), { name: 'p' });
    const t = trace(() => {
      const first = p.add(1);
      activeTrace().assign(p, first.reshape(6).value);
      return p.mul(2);
    }, []);
    // one graph input for p; its second read is the reshaped assignment
    expect(t.params).toHaveLength(1);
    const read = t.graph.outputs[0]!.producer!.inputs[0]!;
    expect(read.producer?.op).toBe('reshape');
    expect(read.shape).toEqual([2, 3]);
  });
});
