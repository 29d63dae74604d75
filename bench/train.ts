/**
 * Training speed: one full train step (forward, label-smoothed
 * cross-entropy, backward, global-norm clipping, AdamW update, src/train/
 * step.ts) of UniFormer-S, CeiT-T and MixFormer-B0 at 224×224, batch 8 and
 * 32, on onnxruntime-node with the given threads. Steps run as the trainer
 * runs them, `--steps-per-run` (default: the trainer's) to one ONNX Runtime
 * run; the time of a step is the run's divided by that.
 * `--opt sgd` runs the step the PyTorch baseline times instead (plain
 * cross-entropy, SGD with momentum, no clipping).
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
 * PyTorch, side by side: with `--torch <dir>` (a folder holding the official
 * model files, see bench/torch_train.py) each row's step is also timed in
 * PyTorch eager on the official code (same batch, threads, loss and
 * optimizer), in rounds of a block of our steps and a block of PyTorch's
 * (⌈reps/2⌉ rounds, two counted runs a block); the ratio is the median over
 * rounds. Without it the table shows the indicative PyTorch figures of
 * shared/baselines/README.md (another machine).
 *
 *   npx tsx bench/train.ts [--models uniformer_small,ceit_tiny,mixformer_b0] [--batch 8,32] [--reps 5] [--threads 2] [--opt adamw|sgd] [--steps-per-run 4] [--torch DIR]
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { compile } from '../src/backends/compile.js';
import { DEFAULT_THREADS } from '../src/backends/ort/session.js';
import { countMacs } from '../src/ir/analysis.js';
import { NDArray } from '../src/ir/ndarray.js';
import { createModel } from '../src/models/index.js';
import { Rng } from '../src/rng.js';
import { parseDataSpec } from '../src/train/data.js';
import { BatchMaker } from '../src/train/loader.js';
import { crossEntropy } from '../src/train/losses.js';
import { AdamW, SGD, paramGroups } from '../src/train/optim.js';
import { TrainStep } from '../src/train/step.js';
import { TRAIN_DEFAULTS } from '../src/train/trainer.js';

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: 'uniformer_small,ceit_tiny,mixformer_b0' },
    batch: { type: 'string', default: '8,32' },
    reps: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(DEFAULT_THREADS) },
    opt: { type: 'string', default: 'adamw' },
    torch: { type: 'string' },
    'steps-per-run': { type: 'string', default: String(TRAIN_DEFAULTS.stepsPerRun) },
  },
});
if (args.opt !== 'adamw' && args.opt !== 'sgd') throw new Error(`--opt must be adamw or sgd, got ${args.opt}`);
const batches = args.batch.split(',').map(Number);
const reps = Number(args.reps);
const threads = Number(args.threads);
const stepsPerRun = Number(args['steps-per-run']);

/**
 * The same step in PyTorch eager on the official model code
 * (bench/torch_train.py), kept running so that blocks of its steps can
 * alternate with blocks of ours: this shared VM drifts by tens of percent
 * within minutes, so both sides must be timed in the same minutes.
 */
class TorchStepper {
  private constructor(
    private readonly proc: ChildProcessByStdio<Writable, Readable, null>,
    private readonly lines: AsyncIterator<string>,
    /** Why the process could not start (e.g. no python3 on PATH), once known. */
    private spawnError?: Error,
  ) {
    proc.on('error', (err) => (this.spawnError = err));
  }

  static async start(name: string, batch: number): Promise<TorchStepper> {
    const script = fileURLToPath(new URL('./torch_train.py', import.meta.url));
    const flags = ['--official', args.torch!, '--model', name, '--batch', String(batch), '--threads', String(threads), '--opt', args.opt!];
    // OpenMP's default waiting (spin briefly, then sleep): OMP_WAIT_POLICY=PASSIVE made PyTorch's 2-thread step slower than its 1-thread one.
    const proc = spawn('python3', [script, ...flags], { stdio: ['pipe', 'pipe', 'inherit'] });
    const stepper = new TorchStepper(proc, createInterface({ input: proc.stdout })[Symbol.asyncIterator]());
    await stepper.reply('ready');
    return stepper;
  }

  private async reply(key: string): Promise<Record<string, unknown>> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error(this.spawnError ? `bench/torch_train.py could not start: ${this.spawnError.message}` : 'bench/torch_train.py exited early (its error is above)');
    const msg = JSON.parse(value) as Record<string, unknown>;
    if (!(key in msg)) throw new Error(`bench/torch_train.py: expected "${key}", got ${value}`);
    return msg;
  }

  /** One PyTorch step, ms. */
  async step(): Promise<number> {
    this.proc.stdin.write('step\n');
    return (await this.reply('ms')).ms as number;
  }

  close(): void {
    this.proc.stdin.end();
  }
}

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
  /** MatMul GFLOP/s measured right before and right after this row's steps. */
  peak: number;
  /** With --torch: PyTorch's median step on the official code, in blocks alternating with ours. */
  torchMs?: number;
  /** With --torch: the median over rounds of PyTorch's step time / ours. */
  torchRatio?: number;
}

async function benchStep(name: string, batch: number): Promise<Row> {
  const model = createModel(name, {}, { seed: 0 });
  const step = new TrainStep(model, {
    // AdamW + label smoothing + clipping: the recipes' step. SGD: what the PyTorch baseline step runs.
    optimizer: args.opt === 'sgd' ? new SGD({ momentum: 0.9 }) : new AdamW(),
    groups: paramGroups(model.namedParameters(), args.opt === 'sgd' ? 1e-4 : 0.05),
    loss: (l, t) => crossEntropy(l, t, { labelSmoothing: args.opt === 'sgd' ? 0 : 0.1 }),
    ...(args.opt === 'sgd' ? {} : { clipGradNorm: 5 }),
    threads,
  });
  const rng = new Rng(1);
  const x = NDArray.float32([batch, 3, 224, 224]);
  for (let i = 0; i < x.size; i++) x.data[i] = rng.normal();
  const t = NDArray.int64([batch], Array.from({ length: batch }, (_, i) => (i * 37) % model.numClasses));
  const run = Array.from({ length: stepsPerRun }, () => ({ x, target: t, lr: 1e-4 }));
  // Counted on the one-step graph the runs loop over (traced once, for both).
  const gflop = (2 * countMacs(step.graph(run[0]!))) / 1e9;
  const torch = args.torch ? await TorchStepper.start(name, batch) : undefined;
  // Time per step, `stepsPerRun` steps to a graph run as the trainer runs them.
  const ours = async () => {
    const t0 = performance.now();
    await step.runMany(run);
    return (performance.now() - t0) / stepsPerRun;
  };
  const firstMs = (await ours()) * stepsPerRun;
  // The machine's matrix-multiply rate under the same conditions as the steps (before and after them).
  const before = await matmulPeak(1024);
  const ms: number[] = [];
  const torchMs: number[] = [];
  // With PyTorch: rounds of a block of our steps and a block of PyTorch's, in alternating
  // order. Each block's first step is not counted: right after the other process's step,
  // either side runs slower (PyTorch's CeiT-T step took 1244 ms straight after ours, 800 ms
  // after its own), and a pause between them slows both instead.
  const blockOf = async (f: () => Promise<number>, into: number[]) => {
    await f();
    for (let i = 0; i < 2; i++) into.push(await f());
    return median(into.slice(-2));
  };
  const roundRatios: number[] = [];
  if (torch) {
    const theirs = () => torch.step();
    for (let r = 0; r < Math.ceil(reps / 2); r++) {
      const theirsFirst = r % 2 ? await blockOf(theirs, torchMs) : undefined;
      const o = await blockOf(ours, ms);
      roundRatios.push((theirsFirst ?? (await blockOf(theirs, torchMs))) / o);
    }
  } else {
    for (let i = 0; i < reps; i++) ms.push(await ours());
  }
  torch?.close();
  const after = await matmulPeak(1024);
  await step.release();
  const row: Row = { model: name, batch, firstMs, stepMs: median(ms), gflop, peak: (before + after) / 2 / 1e9 };
  return torch ? { ...row, torchMs: median(torchMs), torchRatio: median(roundRatios) } : row;
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

log(`${args.opt === 'sgd' ? 'SGD (momentum 0.9), cross-entropy' : 'AdamW, label-smoothed cross-entropy, clipping'}; onnxruntime-node, ${threads} threads; ${stepsPerRun} steps per graph run; ${args.torch ? `${Math.ceil(reps / 2)} rounds of three runs a side (the first of each block not counted)` : `${reps} timed runs`} after one warm-up (trace, autodiff, session creation)`);
const rows: Row[] = [];
for (const name of args.models.split(',')) {
  for (const b of batches) {
    log(`${name} batch ${b} …`);
    const r = await benchStep(name, b);
    rows.push(r);
    log(`  first run ${(r.firstMs / 1000).toFixed(1)} s, step ${r.stepMs.toFixed(0)} ms, MatMul ${r.peak.toFixed(0)} GFLOP/s${r.torchMs ? `, PyTorch ${r.torchMs.toFixed(0)} ms` : ''}`);
  }
}
const data = await dataPipeline(32);

const torchColumn = args.torch ? 'PyTorch step ms (official code, same run)' : 'PyTorch b8 step (baselines README)';
const lines = [
  `| model | batch | step ms | images/s | GFLOP/step | GFLOP/s | MatMul GFLOP/s | efficiency | ${torchColumn} | PyTorch time / ours |`,
  `|---|---|---|---|---|---|---|---|---|---|`,
  ...rows.map((r) => {
    const flops = r.gflop / (r.stepMs / 1000);
    const indicative = r.batch === 8 ? TORCH_B8_S[r.model] : undefined;
    const torch = args.torch ? r.torchMs : indicative && indicative * 1000;
    const ratio = args.torch ? r.torchRatio : torch && torch / r.stepMs;
    return `| ${r.model} | ${r.batch} | ${r.stepMs.toFixed(0)} | ${((r.batch * 1000) / r.stepMs).toFixed(1)} | ${r.gflop.toFixed(1)} | ${flops.toFixed(1)} | ${r.peak.toFixed(0)} | ${((flops / r.peak) * 100).toFixed(0)}% | ${torch ? `${torch.toFixed(0)} ms` : ''} | ${ratio ? `${ratio.toFixed(2)}×` : ''} |`;
  }),
];
console.log(lines.join('\n'));
console.log(`\nEfficiency: the step's GFLOP/s over ONNX Runtime's 1024³ float32 MatMul GFLOP/s (${threads} threads), measured right before and after that row's steps. PyTorch time / ours > 1 means faster than PyTorch.`);
console.log(`Data pipeline (random resized crop + flip + normalise to 224, one thread): ${data.toFixed(0)} ms per batch of 32, made in the data worker while the step runs.`);
