/**
 * Whole-model inference latency: volution's in-process inference graph vs the
 * official PyTorch model exported by PyTorch's own ONNX exporter, both run by
 * the same onnxruntime-node in the same process with the same session
 * options (2 intra-op threads, 1 inter-op, sequential, ORT_ENABLE_ALL).
 * Calls alternate (order flipped every repetition) after warm-ups; the
 * reported times are medians, the ratio the median of the per-pair ratios
 * (robust to this VM's minute-to-minute drift, which moves both sides).
 * The baselines' weights are a structured fill and ours are seeded random: kernels take the same time whatever the values.
 *
 * With `--memory`, each model and batch is also run once in a fresh child
 * process per side, and the process's peak RSS is reported (weights,
 * ONNX Runtime's arena and every intermediate included).
 *
 *   npx tsx bench/models.ts [--models uniformer_small,ceit_tiny] [--batch 1,8] [--reps 10] [--warmup 2] [--threads 2] [--baselines <dir>] [--memory]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';
import { createInferenceRunner } from '../src/backends/passes/export.js';
import { DEFAULT_THREADS, OrtSession } from '../src/backends/ort/session.js';
import { NDArray } from '../src/ir/ndarray.js';
import { createModel, getVariant, listModels } from '../src/models/index.js';
import { Rng } from '../src/rng.js';

const MODELS = ['uniformer_small', 'uniformer_base', 'ceit_tiny', 'ceit_small', 'mixformer_b0', 'mixformer_b4', 'acmix_swin_tiny', 'acmix_resnet26'];
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const { values: args } = parseArgs({
  options: {
    models: { type: 'string', default: MODELS.join(',') },
    batch: { type: 'string', default: '1,8' },
    reps: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    threads: { type: 'string', default: String(DEFAULT_THREADS) },
    // The PyTorch-exported baselines sit beside the repository in the development checkout (shared/baselines).
    baselines: { type: 'string', default: resolve(ROOT, '..', 'shared', 'baselines') },
    memory: { type: 'boolean', default: false },
    /** Internal: run one batch of one side in this process and print its peak RSS (MB). */
    child: { type: 'string' },
  },
});
const batches = args.batch.split(',').map(Number);
const reps = Number(args.reps);
const warmup = Number(args.warmup);
const threads = Number(args.threads);

/** An in-place progress line on stderr, when it is a terminal. */
function progress(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${text}\x1b[K`);
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return performance.now() - t0;
}

interface Row {
  model: string;
  batch: number;
  ours: number;
  baseline: number;
  /** The median over repetitions of ours / baseline, each pair timed back to back. */
  ratio: number;
}

async function benchModel(name: string, baselineBytes: Uint8Array): Promise<Row[]> {
  const model = createModel(name).eval();
  const [c, h, w] = getVariant(name).pretrained.inputSize;
  // Both graphs have a dynamic batch: one session each serves every batch size. The two sessions
  // take turns, so neither may spin-wait: its idle workers would steal the other's cores.
  const baseline = await OrtSession.create(baselineBytes, { threads, spinWait: false });
  const ours = await createInferenceRunner((x) => model.call(x), [c, h, w], { threads, spinWait: false });
  const rows: Row[] = [];
  try {
    for (const batch of batches) {
      const rng = new Rng(batch);
      const x = NDArray.float32([batch, c, h, w]);
      for (let i = 0; i < x.size; i++) x.data[i] = rng.normal();
      const runOurs = () => ours.run(x);
      const runBaseline = () => baseline.run({ input: x });
      for (let i = 0; i < warmup; i++) {
        await runOurs();
        await runBaseline();
      }
      const times = { ours: [] as number[], baseline: [] as number[], ratios: [] as number[] };
      for (let r = 0; r < reps; r++) {
        // Flip the order every repetition so neither side always runs on a warmer cache.
        let ourMs: number;
        let baselineMs: number;
        if (r % 2 === 0) {
          ourMs = await timed(runOurs);
          baselineMs = await timed(runBaseline);
        } else {
          baselineMs = await timed(runBaseline);
          ourMs = await timed(runOurs);
        }
        times.ours.push(ourMs);
        times.baseline.push(baselineMs);
        times.ratios.push(ourMs / baselineMs);
        progress(`${name} batch ${batch}: ${r + 1}/${reps}`);
      }
      rows.push({ model: name, batch, ours: median(times.ours), baseline: median(times.baseline), ratio: median(times.ratios) });
    }
  } finally {
    await ours.release();
    await baseline.release();
    progress('');
  }
  return rows;
}

/** One batch of one side, in this (child) process: prints the peak RSS in MB. */
async function peakChild(side: 'ours' | 'baseline', name: string, batch: number): Promise<void> {
  const [c, h, w] = getVariant(name).pretrained.inputSize;
  const x = NDArray.float32([batch, c, h, w]);
  if (side === 'ours') {
    const model = createModel(name, {}, { init: false }).eval();
    const runner = await createInferenceRunner((t) => model.call(t), [c, h, w], { threads });
    await runner.run(x);
  } else {
    const session = await OrtSession.create(gunzipSync(readFileSync(resolve(args.baselines, `${name}.onnx.gz`))), { threads });
    await session.run({ input: x });
  }
  console.log((process.resourceUsage().maxRSS / 1024).toFixed(0));
}

function peakMB(side: 'ours' | 'baseline', name: string, batch: number): number {
  const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', side, '--models', name, '--batch', String(batch), '--baselines', args.baselines, '--threads', String(threads)], { encoding: 'utf8' });
  return Number(out.trim().split('\n').at(-1));
}

if (args.child) {
  await peakChild(args.child as 'ours' | 'baseline', args.models, batches[0]!);
  process.exit(0);
}

const rows: Row[] = [];
const notes: string[] = [];
for (const name of args.models.split(',').map((s) => s.trim())) {
  const file = resolve(args.baselines, `${name}.onnx.gz`);
  if (listModels(name).length === 0) notes.push(`${name}: skipped, not registered (its family is not written yet)`);
  else if (!existsSync(file)) notes.push(`${name}: skipped, no baseline at ${file}`);
  else rows.push(...(await benchModel(name, gunzipSync(readFileSync(file)))));
}

const ort = await import('onnxruntime-node');
console.log(`onnxruntime-node ${ort.env.versions.node} (cpu), ${threads} intra-op threads, 1 inter-op, sequential, ORT_ENABLE_ALL, no spin-waiting; median of ${reps} alternating runs after ${warmup} warm-ups`);
console.log('ours: volution createInferenceRunner (BatchNorms and conv residuals folded, ONNX Runtime contrib ops); baseline: the official model exported by torch.onnx.export; both with a dynamic batch');
console.log(['model'.padEnd(18), 'batch'.padStart(5), 'ours ms'.padStart(9), 'baseline ms'.padStart(12), 'ours/baseline'.padStart(14)].join('  '));
for (const r of rows) {
  console.log([r.model.padEnd(18), String(r.batch).padStart(5), r.ours.toFixed(1).padStart(9), r.baseline.toFixed(1).padStart(12), r.ratio.toFixed(2).padStart(14)].join('  '));
}
if (args.memory) {
  console.log('\npeak RSS of a fresh process that loads the model and runs one batch (MB)');
  console.log(['model'.padEnd(18), 'batch'.padStart(5), 'ours'.padStart(8), 'baseline'.padStart(9)].join('  '));
  for (const r of rows) console.log([r.model.padEnd(18), String(r.batch).padStart(5), String(peakMB('ours', r.model, r.batch)).padStart(8), String(peakMB('baseline', r.model, r.batch)).padStart(9)].join('  '));
}
for (const n of notes) console.log(`note: ${n}`);
