/**
 * Optimizer steps against torch.optim: a Linear(3, 2) with fixed weights,
 * label-smoothed cross-entropy, three steps; weight decay on the weight
 * only; `_clip` cases clip the global norm first (clip_grad_norm_). Expected values from PyTorch 1.13 (sgd_clip: 2.13) in float64 (our step runs in
 * float32 on ONNX Runtime, hence the 1e-5 tolerance).
 */
import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/ir/ndarray.js';
import { Linear, Mlp } from '../../src/nn/layers.js';
import { Rng } from '../../src/rng.js';
import { type CompiledFn, compile } from '../../src/backends/compile.js';
import { activeTrace } from '../../src/tensor/trace.js';
import { Parameter } from '../../src/tensor/tensor.js';
import { crossEntropy } from '../../src/train/losses.js';
import { AdamW, type Optimizer, SGD, chunkGroups, paramGroups } from '../../src/train/optim.js';
import { TrainStep } from '../../src/train/step.js';
import { expectClose } from '../helpers/opcheck.js';

const torchRef = {
  sgd: { w: [1.1959442092105514, 0.9266106537912033, -0.5471032863687391, -0.7158932878980513, -0.638580101003703, 0.2590727335812394], b: [-0.32228395588680364, 0.32228395588680403], losses: [1.3330364423665524, 0.4964307027906816, 0.26672171254034827] },
  sgd_damp: { w: [1.0155424407886664, 0.6192931775673647, -0.5029998104037132, -0.527353096413666, -0.3263795709423645, 0.21008620377871362], b: [-0.2636127181237564, 0.26361271812375675], losses: [1.3330364423665524, 0.797105605786768, 0.3955765160365865] },
  adamw: { w: [0.3977103346054971, 0.09998538864216001, 0.005544600104472011, 0.10079116489450288, 0.19911551105783995, -0.304645499804472], b: [-0.24237680127412803, 0.24237680127412808], losses: [1.3330364423665524, 1.052246186504638, 0.8168934685714565] },
  sgd_clip: { w: [0.18330653724658116, -0.12216680517219008, 0.2072619112426871, 0.29674438406591885, 0.4101973579596901, -0.4952924640301871], b: [0.020197281021903022, -0.020197281021902994], losses: [1.3330364423665524, 1.2730158810231358, 1.1904793517481496] },
  adamw_clip: { w: [0.39962022069259845, 0.10078578600933306, 0.0019097805143952484, 0.09888127880740155, 0.1983151136906669, -0.3010106802143952], b: [-0.24628407206356417, 0.24628407206356417], losses: [1.3330364423665524, 1.0522463324919362, 0.8158710209127376] },
};

async function run(opt: Optimizer, lr: number, clip?: number) {
  const lin = new Linear(3, 2, { rng: new Rng(0) }).nameParameters();
  lin.weight.data = NDArray.float32([2, 3], [0.1, -0.2, 0.3, 0.4, 0.5, -0.6]);
  lin.bias!.data = NDArray.float32([2], [0.05, -0.05]);
  const step = new TrainStep(lin, {
    optimizer: opt,
    groups: [
      { params: [lin.weight], weightDecay: 0.01 },
      { params: [lin.bias!], weightDecay: 0 },
    ],
    loss: (logits, t) => crossEntropy(logits, t, { labelSmoothing: 0.1 }),
    clipGradNorm: clip,
  });
  const x = NDArray.float32([4, 3], [1, 2, 3, -1, 0, 1, 0.5, -0.5, 2, 2, 1, 0]);
  const t = NDArray.int64([4], [0, 1, 1, 0]);
  const losses: number[] = [];
  for (let i = 0; i < 3; i++) losses.push((await step.run(x, t, lr)).loss);
  await step.release();
  return { w: Array.from(lin.weight.data.toFloat64()), b: Array.from(lin.bias!.data.toFloat64()), losses };
}

describe('optimizers match torch.optim over three steps', () => {
  const cases: [keyof typeof torchRef, () => Optimizer, number, number?][] = [
    ['sgd', () => new SGD({ momentum: 0.9, nesterov: true }), 0.5],
    ['sgd_damp', () => new SGD({ momentum: 0.9, dampening: 0.3 }), 0.5],
    ['sgd_clip', () => new SGD({ momentum: 0.9, nesterov: true }), 0.5, 0.05],
    ['adamw', () => new AdamW({ betas: [0.9, 0.99] }), 0.1],
    ['adamw_clip', () => new AdamW(), 0.1, 0.05],
  ];
  for (const [name, make, lr, clip] of cases) {
    it(name, async () => {
      const got = await run(make(), lr, clip);
      const ref = torchRef[name];
      expectClose(got.losses, ref.losses, 1e-5, `${name} losses`);
      expectClose(got.w, ref.w, 1e-5, `${name} weight`);
      expectClose(got.b, ref.b, 1e-5, `${name} bias`);
    });
  }
  it('a non-finite loss stops with a typed error and leaves the parameters untouched', async () => {
    const lin = new Linear(2, 2, { rng: new Rng(0) }).nameParameters();
    const step = new TrainStep(lin, { optimizer: new SGD(), groups: [{ params: [lin.weight, lin.bias!], weightDecay: 0 }], loss: crossEntropy });
    const before = Array.from(lin.weight.data.toFloat64());
    await expect(step.run(NDArray.float32([1, 2], [NaN, 1]), NDArray.int64([1], [0]), 0.1)).rejects.toThrow(/loss is NaN at step 1/);
    expect(Array.from(lin.weight.data.toFloat64())).toEqual(before);
    expect(step.steps).toBe(0);
  });
});

describe('the update runs in chunks of parameters', () => {
  it('chunkGroups keeps the order and the weight decay, and puts a parameter larger than a chunk alone', () => {
    const mlp = new Mlp(3, 4, { rng: new Rng(0) }).nameParameters(); // fc1.weight 12, fc1.bias 4, fc2.weight 12, fc2.bias 3
    const groups = paramGroups(mlp.namedParameters(), 0.05);
    const chunks = chunkGroups(groups, 10);
    expect(chunks.map((c) => [c.params.map((p) => p.name), c.weightDecay])).toEqual([
      [['fc1.weight'], 0.05],
      [['fc2.weight'], 0.05],
      [['fc1.bias', 'fc2.bias'], 0],
    ]);
    expect(() => chunkGroups(groups, 0)).toThrow(/chunk size must be at least 1/);
  });

  it('by default a group of up to 2²² elements stays whole, and a larger one is split into chunks of 2¹⁷', () => {
    const param = (name: string, size: number) => new Parameter(NDArray.float32([size]), { name });
    const small = [{ params: [param('a', 3_000_000), param('b', 1_000_000)], weightDecay: 0.05 }];
    expect(chunkGroups(small)).toEqual(small);
    const large = [{ params: [param('a', 3_000_000), param('b', 60_000), param('c', 60_000), param('d', 20_000), param('e', 2_000_000)], weightDecay: 0 }];
    expect(chunkGroups(large).map((c) => c.params.map((p) => p.name))).toEqual([['a'], ['b', 'c'], ['d'], ['e']]);
  });

  it('updated parameters leave the graph as flat slices or whole chunks (a Reshape to a graph output is a copy in ONNX Runtime) and come back in their own shapes', async () => {
    const mlp = new Mlp(3, 4, { rng: new Rng(0), outFeatures: 2 }).nameParameters();
    const step = new TrainStep(mlp, { optimizer: new AdamW(), groups: paramGroups(mlp.namedParameters(), 0.05), loss: crossEntropy, optimizerChunk: 6 });
    const x = NDArray.float32([4, 3], [1, 2, 3, -1, 0, 1, 0.5, -0.5, 2, 2, 1, 0]);
    const t = NDArray.int64([4], [0, 1, 1, 0]);
    const shapes = mlp.namedParameters().map(([k, p]) => [k, p.data.shape]);
    // the step's compiled function is private: the graph it traces is what is under test
    const traced = (step as unknown as { fn: CompiledFn }).fn.traced(x, t, NDArray.float32([], [0.1]), NDArray.float32([], [1]));
    const producers = traced.updates.map(([, v]) => v.producer?.op);
    expect(producers).not.toContain('reshape');
    // chunks of ≤ 6: fc1.weight (12) and fc2.weight (8, in rows of one) alone, the biases together
    const updateShapes = new Map(traced.updates.map(([p, v]) => [p.name, v.shape]));
    expect(updateShapes.get('fc1.weight')).toEqual([12]);
    expect(updateShapes.get('fc2.weight')).toEqual([8, 1]);
    expect([updateShapes.get('fc1.bias'), updateShapes.get('fc2.bias')]).toEqual([[4], [2]]);
    await step.run(x, t, 0.1);
    expect(mlp.namedParameters().map(([k, p]) => [k, p.data.shape])).toEqual(shapes);
    await step.release();
  });

  it('Trace.assign refuses a value with another element count', () => {
    const p = new Parameter(NDArray.float32([2, 3]), { name: 'p' });
    const fn = compile((a) => {
      activeTrace().assign(p, a!.value);
      return a!;
    });
    expect(() => fn.traced(NDArray.float32([5]))).toThrow(/assign: a value of shape \[5\] for a buffer of shape \[2, 3\]/);
  });

  for (const [name, make] of [
    ['adamw', () => new AdamW()],
    ['sgd', () => new SGD({ momentum: 0.9, nesterov: true })],
  ] as const) {
    it(`${name}: chunks of one and of several parameters give the same steps and state as one chunk per group`, async () => {
      const train = async (optimizerChunk?: number) => {
        const mlp = new Mlp(3, 4, { rng: new Rng(0), outFeatures: 2 }).nameParameters();
        const optimizer = make();
        const step = new TrainStep(mlp, { optimizer, groups: paramGroups(mlp.namedParameters(), 0.05), loss: crossEntropy, clipGradNorm: 0.5, optimizerChunk });
        const x = NDArray.float32([4, 3], [1, 2, 3, -1, 0, 1, 0.5, -0.5, 2, 2, 1, 0]);
        const t = NDArray.int64([4], [0, 1, 1, 0]);
        const losses: number[] = [];
        for (let i = 0; i < 3; i++) losses.push((await step.run(x, t, 0.1)).loss);
        await step.release();
        const sorted = (sd: Map<string, NDArray>) => [...sd].sort(([a], [b]) => a.localeCompare(b));
        const values = (sd: Map<string, NDArray>) => sorted(sd).flatMap(([, v]) => Array.from(v.toFloat64()));
        const shapes = (sd: Map<string, NDArray>) => sorted(sd).map(([k, v]) => [k, v.shape]);
        return { losses, params: values(mlp.stateDict()), state: values(optimizer.stateDict()), shapes: shapes(optimizer.stateDict()) };
      };
      const whole = await train();
      const chunked = await train(6); // fc1.weight and fc2.weight alone, the biases together
      // The same state slots, by parameter; values up to float32 rounding (the norm sums chunk by chunk).
      expect(chunked.shapes).toEqual(whole.shapes);
      expectClose(chunked.losses, whole.losses, 1e-6, 'losses');
      expectClose(chunked.params, whole.params, 1e-6, 'parameters');
      expectClose(chunked.state, whole.state, 1e-6, 'optimizer state');
    });
  }
});
