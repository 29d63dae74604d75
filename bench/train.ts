/**
 * Training speed: one full train step (forward, label-smoothed
 * cross-entropy, backward, global-norm clipping, AdamW update: one ONNX
 * graph, src/train/step.ts) of UniFormer-S, CeiT-T and MixFormer-B0 at
 * 224×224, batch 8 and 32, on onnxruntime-node with the given threads.
 *
 * Efficiency: the step's FLOPs per second over the matrix-multiply FLOPs
 * per second ONNX Runtime reaches on this machine, measured in the same run
 * (a 1024³ float32 MatMul, same threads). The step's FLOPs are counted on
 * its graph: 2 × the multiply-accumulates of every convolution and matrix
 * product, forward and backward (src/ir/analysis.ts; elementwise ops,
 * norms and softmax are not counted, as fvcore does not).
 *
 * Also measured: the data pipeline's time to make one batch at 224 (random
 * resized crop, flip, normalise) next to the step it must keep up with.
 *
 *   npx tsx bench/train.ts [--models uniformer_small,ceit_tiny,mixformer_b0] [--batch 8,32] [--reps 3] [--threads 2]
 */
import { parseArgs } from 'node:util';
import { compile, type CompiledFn } from '../src/backends/compile.js';
import { DEFAULT_THREADS } from '../src/backends/ort/session.js';
import { countMacs } from '../src/ir/analysis.js';
import { NDArray } from '../src/ir/ndarray.js';
import { createModel } from '../src/models/index.js';
import { Rng } from '../src/rng.js';
import { parseDataSpec } from '../src/train/data.js';
import { BatchMaker } from '../src/train/loader.js';
import { crossEntropy } from '../src/train/losses.js';
import { AdamW, paramGroups } from '../src/train/optim.js';
import { TrainStep } from '../src/train/step.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'uniformer_small,ceit_tiny,mixformer_b0' },
    batch: { type: 'string', default: '8,32' },
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: String(DEFAULT_THREADS) },
  },
});
const batches = args.batch.split(',').map(Number);
const reps = Number(args.reps);
const threads = Number(args.threads);

/** PyTorch 1.13 eager, one train step at batch 8 on 2 threads (shared/baselines/README.md), seconds. */
const TORCH_B8_S: Record<string, number> = { uniformer_small: 1.63, uniformer_base: 3.66, ceit_tiny: 0.54, ceit_small: 1.56, mixformer_b0: 0.38, acmix_swin_tiny: 2.89 };

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function log(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** ORT's float32 MatMul throughput (FLOP/s) at n³, median of `reps` after a warm-up. */
async function matmulPeak(n: number): Promise<number> {
  const f = compile((a, b) => a!.matmul(b!), { threads });
  const rng = new Rng(0);
  const a = NDArray.float32([n, n]);
  const b = NDArray.float32([n, n]);
  for (let i = 0; i < a.size; i++) {
    a.data[i] = rng.uniform() - 0.5;
    b.data[i] = rng.uniform() - 0.5;
  }
  await f(a, b);
  const ms: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    await f(a, b);
    ms.push(performance.now() - t0);
  }
  await f.release();
  return (2 * n ** 3) / (median(ms) / 1000);
}

interface Row {
  model: string;
  batch: number;
  firstMs: number;
  stepMs: number;
  gflop: number;
}

async function benchStep(name: string, batch: number): Promise<Row> {
  const model = createModel(name, {}, { seed: 0 });
  const step = new TrainStep(model, {
    optimizer: new AdamW(),
    groups: paramGroups(model.namedParameters(), 0.05),
    loss: (l, t) => crossEntropy(l, t, { labelSmoothing: 0.1 }),
    clipGradNorm: 5,
    threads,
  });
  const rng = new Rng(1);
  const x = NDArray.float32([batch, 3, 224, 224]);
  for (let i = 0; i < x.size; i++) x.data[i] = rng.normal();
  const t = NDArray.int64([batch], Array.from({ length: batch }, (_, i) => (i * 37) % model.numClasses));
  // The graph the step runs (its compiled function's trace for these inputs).
  const fn = (step as unknown as { fn: CompiledFn }).fn;
  const graph = fn.traced(x, t, NDArray.float32([], [1e-4]), NDArray.float32([], [1])).graph;
  const gflop = (2 * countMacs(graph)) / 1e9;
  let t0 = performance.now();
  await step.run(x, t, 1e-4);
  const firstMs = performance.now() - t0;
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    t0 = performance.now();
    await step.run(x, t, 1e-4);
    ms.push(performance.now() - t0);
  }
  await step.release();
  return { model: name, batch, firstMs, stepMs: median(ms), gflop };
}

async function dataPipeline(batch: number): Promise<number> {
  const maker = new BatchMaker({
    data: parseDataSpec('synthetic:size=256,train=512,val=8'),
    split: 'train',
    transform: { size: 224, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], interpolation: 'bicubic', train: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3], hflip: 0.5 } },
    batchSize: batch,
    shuffle: true,
    dropLast: true,
    seed: 0,
  });
  // Images are generated (and cached) on first use: warm the cache, then time the batch assembly alone.
  for (let i = 0; i < maker.batches; i++) await maker.make(0, i);
  const ms: number[] = [];
  for (let i = 0; i < Math.min(5, maker.batches); i++) ms.push((await maker.make(1, i)).prepMs);
  return median(ms);
}

log(`onnxruntime-node, ${threads} threads; ${reps} timed steps after one warm-up (trace, autodiff, session creation)`);
const peak = await matmulPeak(1024);
log(`MatMul 1024³ float32: ${(peak / 1e9).toFixed(1)} GFLOP/s`);
const rows: Row[] = [];
for (const name of args.models.split(',')) {
  for (const b of batches) {
    log(`${name} batch ${b} …`);
    const r = await benchStep(name, b);
    rows.push(r);
    log(`  first step ${(r.firstMs / 1000).toFixed(1)} s, step ${r.stepMs.toFixed(0)} ms`);
  }
}
const peakAfter = await matmulPeak(1024);
const data = await dataPipeline(32);

const lines = [
  `| model | batch | step ms | images/s | GFLOP/step | GFLOP/s | efficiency | PyTorch b8 step (README) | vs PyTorch |`,
  `|---|---|---|---|---|---|---|---|---|`,
  ...rows.map((r) => {
    const flops = r.gflop / (r.stepMs / 1000);
    const torch = TORCH_B8_S[r.model];
    const vs = r.batch === 8 && torch ? `${((torch * 1000) / r.stepMs).toFixed(2)}× faster` : '';
    return `| ${r.model} | ${r.batch} | ${r.stepMs.toFixed(0)} | ${((r.batch * 1000) / r.stepMs).toFixed(1)} | ${r.gflop.toFixed(1)} | ${flops.toFixed(1)} | ${((flops * 1e9) / peak * 100).toFixed(0)}% | ${r.batch === 8 && torch ? `${(torch * 1000).toFixed(0)} ms` : ''} | ${vs} |`;
  }),
];
console.log(lines.join('\n'));
console.log(`\nMatMul peak (1024³, float32, ${threads} threads): ${(peak / 1e9).toFixed(1)} GFLOP/s at the start, ${(peakAfter / 1e9).toFixed(1)} at the end; efficiency uses the start value.`);
console.log(`Data pipeline (random resized crop + flip + normalise to 224, one thread): ${data.toFixed(0)} ms per batch of 32, in the data worker, overlapping the step.`);
