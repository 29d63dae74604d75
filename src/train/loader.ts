/**
 * Batches: deterministic order and augmentation, prepared off the main
 * thread.
 *
 * A batch is a pure function of (loader spec, epoch, batch index): the
 * epoch's order is a Fisher–Yates shuffle seeded by (seed, epoch), and the
 * batch's augmentation draws from a generator seeded by (seed, epoch,
 * index). So a run resumed mid-epoch sees exactly the batches an
 * uninterrupted run sees, whichever thread made them.
 *
 * ONNX Runtime's `run` in onnxruntime-node executes on the JavaScript main
 * thread, so batch assembly there could only alternate with the step. The
 * loader therefore runs a `worker_threads` worker that opens the same data
 * set and prepares the batches requested ahead (`prefetch`) while the step
 * runs; typed arrays come back without copying. Without a worker (or when
 * one cannot start) it prepares batches in-process.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ConfigError, FormatError, VolutionError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { Rng } from '../rng.js';
import { type MixupSpec, type TransformSpec, mixBatch, transformInto } from './augment.js';
import { type DataSpec, type Dataset, type Split, openDataset } from './data.js';

/** Everything that defines a loader's batches (plain data: it crosses to the worker). */
export interface LoaderSpec {
  data: DataSpec;
  split: Split;
  transform: TransformSpec;
  /** Mixup/CutMix; targets are soft [B, K] float32 when set, int64 [B] otherwise. */
  mixup?: MixupSpec;
  batchSize: number;
  shuffle: boolean;
  /** Drop the last incomplete batch (training); otherwise it is padded to full size (one graph shape) and `count` says how many are real. */
  dropLast: boolean;
  seed: number;
  /** Use only the first `limit` samples (quick runs, tests). */
  limit?: number;
}

/** A batch as typed arrays (what crosses between threads). */
export interface RawBatch {
  epoch: number;
  index: number;
  /** [B, 3, S, S] normalised. */
  x: Float32Array;
  /** int64 class indices [B], or soft targets [B, K] with mixup. */
  target: BigInt64Array | Float32Array;
  /** Hard labels [B] (the unmixed ones); −1 for padding. */
  labels: Int32Array;
  /** Real samples in the batch (≤ B when the last eval batch is padded). */
  count: number;
  /** Milliseconds spent making the batch (in whichever thread made it). */
  prepMs: number;
}

export interface Batch extends Omit<RawBatch, 'x' | 'target'> {
  x: NDArray<'float32'>;
  target: NDArray;
}

/** A uint32 hash of a few integers (seed derivation). */
export function mixSeed(...xs: readonly number[]): number {
  let h = 0x2545f491;
  for (const x of xs) {
    h = (h ^ (Math.imul(x >>> 0, 0x9e3779b1) >>> 0)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

const ORDER_STREAM = 0x0bde;
const AUGMENT_STREAM = 0xa06;

/** Prepares batches in the calling thread. */
export class BatchMaker {
  readonly dataset: Dataset;
  readonly length: number;
  readonly batches: number;
  private orderCache: { epoch: number; order: Uint32Array } | undefined;

  constructor(readonly spec: LoaderSpec) {
    if (!Number.isInteger(spec.batchSize) || spec.batchSize < 1) throw new ConfigError(`batch size must be a whole number ≥ 1, got ${spec.batchSize}`);
    this.dataset = openDataset(spec.data, spec.split);
    this.length = Math.min(this.dataset.length, spec.limit ?? Infinity);
    this.batches = spec.dropLast ? Math.floor(this.length / spec.batchSize) : Math.ceil(this.length / spec.batchSize);
    if (this.batches === 0) throw new ConfigError(`${this.dataset.description}: ${this.length} samples make no full batch of ${spec.batchSize}; lower --batch`);
  }

  /** The epoch's sample order. */
  order(epoch: number): Uint32Array {
    if (this.orderCache?.epoch !== epoch) {
      const idx = Array.from({ length: this.length }, (_, i) => i);
      if (this.spec.shuffle) new Rng(mixSeed(this.spec.seed, ORDER_STREAM, epoch)).shuffle(idx);
      this.orderCache = { epoch, order: Uint32Array.from(idx) };
    }
    return this.orderCache.order;
  }

  async make(epoch: number, index: number): Promise<RawBatch> {
    const t0 = performance.now();
    const { batchSize: b, transform } = this.spec;
    if (!(index >= 0 && index < this.batches)) throw new ConfigError(`batch ${index} is out of range (${this.batches} per epoch)`);
    const order = this.order(epoch);
    const ids = Array.from(order.subarray(index * b, Math.min(this.length, (index + 1) * b)));
    const samples = await Promise.all(ids.map((i) => this.dataset.get(i)));
    const rng = new Rng(mixSeed(this.spec.seed, AUGMENT_STREAM, epoch, index));
    const s = transform.size;
    const x = new Float32Array(b * 3 * s * s);
    const labels = new Int32Array(b).fill(-1);
    samples.forEach((sample, k) => {
      transformInto(sample.image, transform, rng, x, k * 3 * s * s);
      labels[k] = sample.label;
    });
    let target: BigInt64Array | Float32Array;
    if (this.spec.mixup) {
      target = mixBatch(x, [b, 3, s, s], labels, this.spec.mixup, rng).target;
    } else {
      target = new BigInt64Array(b);
      for (let k = 0; k < b; k++) target[k] = BigInt(Math.max(0, labels[k]!));
    }
    return { epoch, index, x, target, labels, count: samples.length, prepMs: performance.now() - t0 };
  }
}

export function toBatch(r: RawBatch, spec: LoaderSpec): Batch {
  const s = spec.transform.size;
  const b = spec.batchSize;
  const x = new NDArray('float32', [b, 3, s, s], r.x);
  const target = r.target instanceof BigInt64Array ? new NDArray('int64', [b], r.target) : new NDArray('float32', [b, r.target.length / b], r.target);
  return { ...r, x, target };
}

interface Pending {
  resolve(b: RawBatch): void;
  reject(e: Error): void;
}

/**
 * Starts the data worker. From the built package it is `data_worker.js`;
 * from TypeScript sources (tsx, vitest) a small bootstrap loads
 * `data_worker.ts` through tsx's API, since loader flags do not reach
 * worker threads on every Node version.
 */
function spawnWorker(spec: LoaderSpec): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./data_worker.js', here), { workerData: spec });
  // tsx's ESM API file, from its package.json (require.resolve would give the CommonJS build).
  const require = createRequire(here);
  const pkg = require.resolve('tsx/package.json');
  const exp = (JSON.parse(readFileSync(pkg, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!.import.default;
  const api = pathToFileURL(join(dirname(pkg), exp)).href;
  const entry = new URL('./data_worker.ts', here).href;
  const boot = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(here)})).catch((e) => { require('node:worker_threads').parentPort.postMessage({ ready: false, error: { name: 'Error', message: String(e && e.message || e) } }); });`;
  return new Worker(boot, { eval: true, workerData: spec });
}

export interface LoaderOptions {
  /** Prepare batches in a worker thread (default true); falls back to in-process when the worker cannot start. */
  worker?: boolean;
}

/**
 * Batches for the training loop. `get(epoch, i)` returns batch i, made in
 * the worker; `prefetch` asks for one ahead so it is ready when the step
 * finishes.
 */
export class Loader {
  /** 'worker' or 'in-process', and why when a worker was wanted but did not start. */
  mode: 'worker' | 'in-process' = 'in-process';
  note: string | undefined;
  private worker: Worker | undefined;
  private readonly pending = new Map<string, { promise: Promise<RawBatch> }>();
  private readonly waiting = new Map<string, Pending>();

  private constructor(
    readonly spec: LoaderSpec,
    private readonly maker: BatchMaker,
  ) {}

  static async create(spec: LoaderSpec, opts: LoaderOptions = {}): Promise<Loader> {
    const loader = new Loader(spec, new BatchMaker(spec));
    if (opts.worker ?? true) await loader.startWorker();
    return loader;
  }

  get dataset(): Dataset {
    return this.maker.dataset;
  }

  get batches(): number {
    return this.maker.batches;
  }

  /** Samples per epoch (after `limit`). */
  get length(): number {
    return this.maker.length;
  }

  private async startWorker(): Promise<void> {
    try {
      const worker = spawnWorker(this.spec);
      await new Promise<void>((resolve, reject) => {
        const onError = (e: Error) => reject(e);
        worker.once('error', onError);
        worker.once('exit', (code) => reject(new Error(`the data worker exited with status ${code} before it was ready`)));
        worker.once('message', (m: { ready?: boolean; error?: { message: string } }) => {
          worker.off('error', onError);
          if (m.ready) resolve();
          else reject(new Error(m.error?.message ?? 'the data worker did not start'));
        });
      });
      worker.removeAllListeners('exit');
      worker.on('message', (m: { key: string; batch?: RawBatch; error?: { name: string; message: string } }) => {
        const w = this.waiting.get(m.key);
        if (!w) return;
        this.waiting.delete(m.key);
        // Idle workers do not keep the process alive; busy ones do.
        if (this.waiting.size === 0) worker.unref();
        if (m.batch) w.resolve(m.batch);
        else w.reject(m.error?.name === 'FormatError' ? new FormatError(m.error.message) : new ConfigError(m.error?.message ?? 'data worker failure'));
      });
      worker.on('error', (e) => this.failAll(e));
      worker.on('exit', () => this.failAll(new Error('the data worker stopped')));
      worker.unref();
      this.worker = worker;
      this.mode = 'worker';
    } catch (err) {
      this.note = `data worker unavailable (${(err as Error).message.split('\n')[0]}); preparing batches in-process`;
      this.mode = 'in-process';
    }
  }

  private failAll(e: Error): void {
    this.worker = undefined;
    for (const [, w] of this.waiting) w.reject(e instanceof VolutionError ? e : new ConfigError(`data worker failed: ${e.message}`));
    this.waiting.clear();
  }

  private request(epoch: number, index: number): Promise<RawBatch> {
    const key = `${epoch}:${index}`;
    const have = this.pending.get(key);
    if (have) return have.promise;
    let promise: Promise<RawBatch>;
    if (this.worker) {
      promise = new Promise<RawBatch>((resolve, reject) => this.waiting.set(key, { resolve, reject }));
      this.worker.ref();
      this.worker.postMessage({ key, epoch, index });
    } else {
      // In-process: made now (after the current synchronous work), in order.
      promise = new Promise<void>((r) => setImmediate(r)).then(() => this.maker.make(epoch, index));
    }
    promise.catch(() => undefined);
    this.pending.set(key, { promise });
    return promise;
  }

  /** Asks for a batch ahead of time. */
  prefetch(epoch: number, index: number): void {
    if (index >= 0 && index < this.batches) void this.request(epoch, index);
  }

  /** Batch `index` of `epoch`. */
  async get(epoch: number, index: number): Promise<Batch> {
    const key = `${epoch}:${index}`;
    try {
      return toBatch(await this.request(epoch, index), this.spec);
    } finally {
      this.pending.delete(key);
    }
  }

  /** Drops prefetched batches (e.g. after an interrupted epoch). */
  clear(): void {
    this.pending.clear();
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.pending.clear();
    if (w) {
      w.removeAllListeners('exit');
      await w.terminate();
    }
  }
}
