/**
 * bench/acmix_local_attention: ACmix-ResNet's 7×7 sliding-window attention,
 * the official Unfold formulation (k and v copied 49 times) against ours
 * (`acmixLocalAttention`: per row offset, a banded matrix product of the
 * queries with the padded key/value rows, read off by a reshape), on
 * ONNX Runtime at 2 threads, for every ACmix layer shape of ACmix-ResNet at
 * 224×224 (head 4).
 *
 * Time: median of --reps calls after 2 warm-ups, the two graphs alternating
 * in one process. Peak memory: each graph runs once more in a fresh child
 * process, which reports its peak RSS (getrusage maxrss) minus its RSS just
 * before the run (inputs allocated, session created). ONNX Runtime's CPU
 * arena keeps what it grew, so this is the run's working set: the arena
 * growth plus the outputs.
 *
 *   npx tsx bench/acmix_local_attention.ts [--batch 8] [--reps 5]
 */
import { spawnSync } from 'node:child_process';
import { compile } from '../src/backends/compile.js';
import { toOnnx } from '../src/backends/onnx/model.js';
import { OrtSession } from '../src/backends/ort/session.js';
import { NDArray } from '../src/ir/ndarray.js';
import { acmixLocalAttention } from '../src/models/acmix.js';
import { Rng } from '../src/rng.js';
import { trace } from '../src/tensor/function.js';
import { type Tensor, unfold } from '../src/tensor/tensor.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const batch = Number(opt('batch', '8'));
const reps = Number(opt('reps', '5'));
const THREADS = 2;
const HEAD = 4;
const KERNEL = 7;

interface Shape {
  layer: string;
  channels: number;
  size: number;
  stride: number;
}

/** The ACmix inputs of ACmix-ResNet at 224: width, map side, stride (the first block of stages 2–4 has stride 2). */
const SHAPES: readonly Shape[] = [
  { layer: 'layer1', channels: 64, size: 56, stride: 1 },
  { layer: 'layer2.0', channels: 128, size: 56, stride: 2 },
  { layer: 'layer2.1+', channels: 128, size: 28, stride: 1 },
  { layer: 'layer3.0', channels: 256, size: 28, stride: 2 },
  { layer: 'layer3.1+', channels: 256, size: 14, stride: 1 },
  { layer: 'layer4.0', channels: 512, size: 14, stride: 2 },
  { layer: 'layer4.1+', channels: 512, size: 7, stride: 1 },
];

type Formulation = 'unfold' | 'banded';

const subsample = (t: Tensor, s: number) => (s > 1 ? t.slice(2, 0, Infinity, s).slice(3, 0, Infinity, s) : t);

/**
 * The attention path from q, k, v [B·head, hd, H, W] (q unscaled) and pe [1, hd, H, W]
 * to the attention output [B·head, hd, H/s, W/s].
 */
function attention(kind: Formulation, s: number) {
  return (q: Tensor, k: Tensor, v: Tensor, pe: Tensor): Tensor => {
    const hd = q.dim(1);
    const qs = subsample(q.mul(hd ** -0.5), s);
    if (kind === 'banded') return acmixLocalAttention(qs, k.sub(pe), v, { kernel: KERNEL, stride: s });
    // The official test_bottleneck.py forward: unfold the reflection-padded maps into [N, hd, 49, Ho, Wo].
    const p = (KERNEL - 1) / 2;
    const [ho, wo] = [qs.dim(2), qs.dim(3)];
    const unfolded = (t: Tensor) => unfold(t.pad([p, p, p, p], 'reflect'), KERNEL, { stride: s }).reshape(t.dim(0), hd, KERNEL * KERNEL, ho, wo);
    const att = qs.unsqueeze(2).mul(unfolded(k).add(subsample(pe, s).unsqueeze(2)).sub(unfolded(pe))).sum(1).softmax(1);
    return att.unsqueeze(1).mul(unfolded(v)).sum(2);
  };
}

function inputs(shape: Shape): NDArray[] {
  const rng = new Rng(0);
  const hd = shape.channels / HEAD;
  const randn = (dims: number[]) => {
    const a = NDArray.float32(dims);
    for (let i = 0; i < a.size; i++) a.data[i] = rng.normal();
    return a;
  };
  const map = [batch * HEAD, hd, shape.size, shape.size];
  return [randn(map), randn(map), randn(map), randn([1, hd, shape.size, shape.size])];
}

const MB = 1024 * 1024;

/** Child mode: one run of one graph, session already created; prints the run's RSS growth in MB. */
async function child(kind: Formulation, index: number): Promise<void> {
  const shape = SHAPES[index]!;
  const xs = inputs(shape);
  const traced = trace(attention(kind, shape.stride), xs.map((a, i) => ({ dtype: a.dtype, shape: a.shape, name: `input_${i}` })));
  const session = await OrtSession.create(toOnnx(traced.graph), { threads: THREADS });
  const feeds = Object.fromEntries(xs.map((a, i) => [`input_${i}`, a]));
  const before = process.memoryUsage().rss;
  const peakBefore = process.resourceUsage().maxRSS * 1024;
  await session.run(feeds);
  const peak = process.resourceUsage().maxRSS * 1024;
  // maxrss only rises: if start-up had peaked above this run, fall back to the RSS the run left behind.
  const grown = peak > peakBefore ? peak - before : process.memoryUsage().rss - before;
  process.stdout.write(JSON.stringify({ mb: grown / MB }));
  await session.release();
}

function peakMemory(kind: Formulation, index: number): number {
  const r = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, '--child', kind, String(index), '--batch', String(batch)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`child ${kind} ${SHAPES[index]!.layer} failed: ${r.stderr}`);
  return (JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { mb: number }).mb;
}

async function main(): Promise<void> {
  console.log(`bench/acmix_local_attention: ACmix-ResNet local attention (7×7, head ${HEAD}) at batch ${batch}, ONNX Runtime, ${THREADS} threads`);
  console.log(`time: median of ${reps} alternating calls (ms); ratio = banded / unfold (< 1: ours faster)`);
  console.log('peak: RSS growth of one run in a fresh child process (MB; includes ORT arena growth and the output)\n');
  console.log(`${'layer'.padEnd(10)}${'shape [B·head, hd, H, W] s'.padEnd(30)}${'unfold'.padStart(9)}${'banded'.padStart(9)}${'ratio'.padStart(7)}${'peak unfold'.padStart(13)}${'peak banded'.padStart(13)}${'max rel Δ'.padStart(11)}`);
  for (const [index, shape] of SHAPES.entries()) {
    const xs = inputs(shape);
    const fns = { unfold: compile(attention('unfold', shape.stride), { threads: THREADS }), banded: compile(attention('banded', shape.stride), { threads: THREADS }) };
    const [ref] = await fns.unfold(...xs);
    const [got] = await fns.banded(...xs);
    let maxDiff = 0;
    let maxRef = 0;
    for (let i = 0; i < ref!.size; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ref!.get(i) - got!.get(i)));
      maxRef = Math.max(maxRef, Math.abs(ref!.get(i)));
    }
    for (const f of Object.values(fns)) await f(...xs);
    const times: Record<Formulation, number[]> = { unfold: [], banded: [] };
    for (let r = 0; r < reps; r++) {
      const order: Formulation[] = r % 2 ? ['banded', 'unfold'] : ['unfold', 'banded'];
      for (const kind of order) {
        const t0 = performance.now();
        await fns[kind](...xs);
        times[kind].push(performance.now() - t0);
      }
    }
    for (const f of Object.values(fns)) await f.release();
    const median = (ts: number[]) => [...ts].sort((a, b) => a - b)[ts.length >> 1]!;
    const [tu, ts] = [median(times.unfold), median(times.banded)];
    const [mu, ms] = [peakMemory('unfold', index), peakMemory('banded', index)];
    const dims = `[${batch * HEAD}, ${shape.channels / HEAD}, ${shape.size}, ${shape.size}] ${shape.stride}`;
    console.log(
      `${shape.layer.padEnd(10)}${dims.padEnd(30)}${tu.toFixed(1).padStart(9)}${ts.toFixed(1).padStart(9)}${(ts / tu).toFixed(2).padStart(7)}${mu.toFixed(0).padStart(13)}${ms.toFixed(0).padStart(13)}${(maxDiff / maxRef).toExponential(1).padStart(11)}`,
    );
  }
}

const childAt = args.indexOf('--child');
if (childAt >= 0) await child(args[childAt + 1] as Formulation, Number(args[childAt + 2]));
else await main();
