/**
 * bench/ops: forward and forward+backward latency of the core ops through
 * our traced graphs on ONNX Runtime, at 1 and 2 threads, and — when
 * `python3 -c 'import torch'` works — the same ops in PyTorch in the same
 * run, with the ratio (ours / PyTorch; < 1 means we are faster). The
 * forward bakes the weights into the graph (as inference does); forward +
 * backward takes them as inputs (as training does).
 *
 * `--depth d` (default 4) chains d copies of each shape-preserving op, each
 * with its own parameters, in one graph (and in one PyTorch function), and
 * reports the time per op: what the op costs inside a model or a train
 * step. A single op per graph (`--depth 1`) also pays for a new JavaScript
 * array holding its whole output on every call (page faults on fresh memory,
 * and onnxruntime-node's copy where the graph has no fused kernel: 0.5–3 ms at
 * these sizes, as much as the kernel itself for layer norm and GELU), a cost
 * models and train steps pay once for their outputs, not per op.
 * Max pooling changes the shape and always runs alone.
 *
 *   npx tsx bench/ops.ts [--reps 15] [--threads 1,2] [--depth 4] [--only <regexp over case names>]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { grad } from '../src/autodiff/grad.js';
import { type TensorFn } from '../src/tensor/function.js';
import { compile } from '../src/backends/compile.js';
import { NDArray } from '../src/ir/ndarray.js';
import { filled, torchDefault, uniform } from '../src/nn/init.js';
import { Rng } from '../src/rng.js';
import { Parameter, type Tensor, batchNormTrain, conv2d, layerNorm, maxPool2d } from '../src/tensor/tensor.js';

interface Case {
  name: string;
  kind: 'conv' | 'attention' | 'layernorm' | 'batchnorm' | 'gelu' | 'maxpool';
  x: number[];
  w?: number[];
  padding?: number;
  groups?: number;
  heads?: number;
}

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : dflt;
};
const reps = Number(opt('reps', '15'));
const threadList = opt('threads', '1,2').split(',').map(Number);
const depth = Number(opt('depth', '4'));
const casesPath = fileURLToPath(new URL('./ops_cases.json', import.meta.url));
/** --only <regexp>: the cases whose name matches (default all). */
const only = new RegExp(opt('only', ''), 'i');
const cases = (JSON.parse(readFileSync(casesPath, 'utf8')) as Case[]).filter((c) => only.test(c.name));

function randn(shape: readonly number[], rng: Rng): NDArray {
  const a = NDArray.float32(shape);
  for (let i = 0; i < a.size; i++) a.data[i] = rng.normal();
  return a;
}

/**
 * The op as a function of (x, ...params), and its parameters, initialised as
 * bench/torch_ops.py's are: values decide speed (a softmax saturated by
 * oversized weights fills the backward with denormals).
 */
function build(c: Case, rng: Rng): { fn: (x: Tensor, ...p: Tensor[]) => Tensor; params: NDArray[] } {
  switch (c.kind) {
    case 'conv':
      return { fn: (x, w) => conv2d(x, w!, undefined, { padding: c.padding, groups: c.groups }), params: [randn(c.w!, rng)] };
    case 'attention': {
      const [b, n, ch] = c.x as [number, number, number];
      const h = c.heads!;
      return {
        fn: (x, wq, bq, wp, bp) => {
          const qkv = x.matmul(wq!.mT).add(bq!).reshape(b, n, 3, h, ch / h).permute(2, 0, 3, 1, 4);
          const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
          const a = q.mul((ch / h) ** -0.5).matmul(k.mT).softmax(-1);
          return a.matmul(v).transpose(1, 2).reshape(b, n, ch).matmul(wp!.mT).add(bp!);
        },
        // nn.Linear's defaults: weight and bias U(±1/√in)
        params: [torchDefault(rng, [3 * ch, ch]), uniform(rng, [3 * ch], ch ** -0.5), torchDefault(rng, [ch, ch]), uniform(rng, [ch], ch ** -0.5)],
      };
    }
    case 'layernorm':
      return { fn: (x, w, bb) => layerNorm(x, w, bb, 1e-5), params: [filled([c.x.at(-1)!], 1), filled([c.x.at(-1)!], 0)] };
    case 'batchnorm':
      return { fn: (x, w, bb) => batchNormTrain(x, w!, bb!, 1e-5)[0], params: [filled([c.x[1]!], 1), filled([c.x[1]!], 0)] };
    case 'gelu':
      return { fn: (x) => x.gelu(), params: [] };
    case 'maxpool':
      return { fn: (x) => maxPool2d(x, 3, { stride: 2, padding: 1 }), params: [] };
  }
}

async function median(f: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 2; i++) await f();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[ts.length >> 1]!;
}

/** How many copies of the case's op one graph chains (see --depth). */
const depthOf = (c: Case) => (c.kind === 'maxpool' ? 1 : depth);

/** `depthOf(c)` copies of the op, each with its own parameters, as one function of (x, ...all parameters). */
function chain(c: Case, rng: Rng): { fn: (x: Tensor, ...p: Tensor[]) => Tensor; params: NDArray[] } {
  const layers = Array.from({ length: depthOf(c) }, () => build(c, rng));
  return {
    fn: (x, ...p) => {
      let at = 0;
      return layers.reduce((y, layer) => layer.fn(y, ...p.slice(at, (at += layer.params.length))), x);
    },
    params: layers.flatMap((l) => l.params),
  };
}

async function ours(c: Case, threads: number): Promise<{ fwd: number; fwdbwd: number }> {
  const rng = new Rng(0);
  const { fn, params: ps } = chain(c, rng);
  const x = randn(c.x, rng);
  // Forward as a model runs it: weights baked into the graph, which lets ONNX Runtime pre-pack them.
  // Forward+backward as training runs it: weights are inputs.
  const weights = ps.map((p, i) => new Parameter(p, { name: `p${i}` }));
  const fwd = compile(((xx: Tensor) => fn(xx, ...weights)) as TensorFn, { threads });
  const yShape = fwd.traced(x).graph.outputs[0]!.shape;
  const cot = randn(yShape, rng);
  // forward + backward as one graph: outputs the gradients for x and every parameter
  const fb = compile(
    ((xx: Tensor, cc: Tensor, ...pp: Tensor[]) => {
      const y = fn(xx, ...pp);
      return grad(y, [xx, ...pp], cc);
    }) as TensorFn,
    { threads },
  );
  const d = depthOf(c);
  const res = { fwd: (await median(() => fwd(x))) / d, fwdbwd: (await median(() => fb(x, cot, ...ps))) / d };
  await fwd.release();
  await fb.release();
  return res;
}

/** The python that imports torch, if any. */
const python = ['python3', '/usr/bin/python3'].find((py) => {
  try {
    execFileSync(py, ['-c', 'import torch'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

/** PyTorch's times for one case, measured right before ours: this VM drifts by tens of percent within minutes. */
function torchTimes(c: Case, threads: number): { fwd: number; fwdbwd: number } | undefined {
  if (!python) return undefined;
  const script = fileURLToPath(new URL('./torch_ops.py', import.meta.url));
  const out = execFileSync(python, [script, JSON.stringify([c]), String(threads), String(reps), String(depthOf(c))], { encoding: 'utf8', maxBuffer: 1 << 20 });
  return (JSON.parse(out) as { fwd: number; fwdbwd: number }[])[0];
}

const fmt = (ms: number) => ms.toFixed(1).padStart(8);
console.log(`bench/ops: median of ${reps} runs, ms per op (${depth} chained per graph, max pool alone); ratio = ours / PyTorch (< 1: faster)\n`);
if (!python) console.log('(PyTorch not found: python3 -c "import torch" failed; showing ours only)\n');
for (const threads of threadList) {
  console.log(`threads = ${threads}`);
  console.log(`${'op'.padEnd(32)}${'fwd'.padStart(8)}${'fwd+bwd'.padStart(9)}${python ? `${'torch fwd'.padStart(10)}${'torch f+b'.padStart(10)}${'ratio f'.padStart(9)}${'ratio f+b'.padStart(10)}` : ''}`);
  for (const c of cases) {
    const t = torchTimes(c, threads);
    const o = await ours(c, threads);
    const tail = t ? `${fmt(t.fwd).padStart(10)}${fmt(t.fwdbwd).padStart(10)}${(o.fwd / t.fwd).toFixed(2).padStart(9)}${(o.fwdbwd / t.fwdbwd).toFixed(2).padStart(10)}` : '';
    console.log(`${c.name.padEnd(32)}${fmt(o.fwd)}${fmt(o.fwdbwd).padStart(9)}${tail}`);
  }
  console.log('');
}
