/**
 * The compiled train step: forward, loss, gradients, optional global-norm
 * clipping, the optimizer update and the EMA, traced into ONE graph that
 * runs on ONNX Runtime. Parameters, optimizer state, BatchNorm statistics
 * and the EMA are inputs of the graph and come back as outputs
 * (Trace.assign), so nothing leaves native code between forward and update.
 *
 * Several steps run in one ONNX Runtime run (`runMany`, an ONNX Loop over
 * the one-step graph, see `compileSteps`), each reading what the one before
 * assigned: onnxruntime-node copies every output into a new JavaScript
 * array, and n steps per run copy the state once instead of n times.
 */
import { grad } from '../autodiff/grad.js';
import { type SteppedFn, compileSteps } from '../backends/compile.js';
import { NonFiniteError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { NDArray } from '../ir/ndarray.js';
import type { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import { type Tensor, where } from '../tensor/tensor.js';
import type { ModelEma } from './ema.js';
import { type Optimizer, type ParamGroup, chunkGroups, chunkTensor } from './optim.js';

export type LossFn = (logits: Tensor, target: Tensor) => Tensor;

export interface TrainStepOptions {
  optimizer: Optimizer;
  groups: readonly ParamGroup[];
  loss: LossFn;
  /** Clip gradients to this global L2 norm (timm's clip_grad 'norm'); off when undefined. */
  clipGradNorm?: number;
  threads?: number;
  /** Elements per chunk of the optimizer update; given, every group is chunked (default: `chunkGroups`'s own choice). */
  optimizerChunk?: number;
  /** Seed of the dropout / drop-path noise stream. */
  seed?: number;
  /** The noise generator (overrides `seed`); keep it to checkpoint its state for an exact resume. */
  rng?: Rng;
  /** A weight average the step updates after every optimizer step, in the same graph. */
  ema?: ModelEma;
}

/** One step's batch and learning rate. */
export interface StepBatch {
  x: NDArray;
  target: NDArray;
  lr: number;
}

export interface StepResult {
  loss: number;
  logits: NDArray;
  /** Global gradient norm before clipping. */
  gradNorm: number;
}

export class TrainStep {
  private readonly fn: SteppedFn;
  private stepCount = 0;

  constructor(
    readonly model: Module,
    readonly opts: TrainStepOptions,
  ) {
    const chunks = chunkGroups(opts.groups, opts.optimizerChunk);
    const params = chunks.flatMap((g) => g.params);
    const { ema } = opts;
    this.fn = compileSteps(
      (x, target, lr, step, emaDecay) => {
        const wasTraining = model.training;
        model.train();
        const logits = model.call(x!);
        model.train(wasTraining);
        const loss = opts.loss(logits, target!);
        const gs = grad(loss, params);
        // One gradient tensor per chunk: the norm, the clipping and the update run chunk by chunk.
        let at = 0;
        const chunked = chunks.map((g) => chunkTensor(gs.slice(at, (at += g.params.length))));
        const norm = chunked.map((g) => g.square().sum()).reduce((a, b) => a.add(b)).sqrt();
        // torch.nn.utils.clip_grad_norm_: g · min(1, max_norm / (norm + 1e-6)), applied by the optimizer
        const gradScale = opts.clipGradNorm === undefined ? undefined : where(norm.gt(opts.clipGradNorm), norm.add(1e-6).reciprocal().mul(opts.clipGradNorm), 1);
        opts.optimizer.update(chunks, chunked, { lr: lr!, step: step!, gradScale });
        // The EMA reads the weights the optimizer just assigned.
        ema?.traceUpdate(emaDecay!);
        return [loss, logits, norm];
      },
      { threads: opts.threads, seed: opts.seed, rng: opts.rng, memoryPattern: false },
    );
  }

  /** Number of steps taken (the optimizer's step count; restored on resume). */
  get steps(): number {
    return this.stepCount;
  }

  set steps(n: number) {
    this.stepCount = n;
  }

  /**
   * One step on a batch. When the loss comes out NaN or Inf, every tensor
   * the step would have changed is put back and a NonFiniteError names the
   * step, so the run can stop with its last good state.
   */
  async run(x: NDArray, target: NDArray, lr: number): Promise<StepResult> {
    return (await this.runMany([{ x, target, lr }]))[0]!;
  }

  /**
   * Several steps in one graph run (fewer copies of the parameters and the
   * optimizer state in and out of ONNX Runtime). On a NaN or Inf loss,
   * nothing changes and a NonFiniteError names the first bad step.
   */
  async runMany(batches: readonly StepBatch[]): Promise<StepResult[]> {
    if (!batches.length) return [];
    const first = this.stepCount + 1;
    const { ema } = this.opts;
    const inputs = batches.map((b, i) => this.inputsOf(b, i));
    const before = this.fn.traced(...inputs[0]!).updates.map(([p]) => [p as { data: NDArray }, p.data] as const);
    const outs = await this.fn(inputs);
    const results = outs.map(([loss, logits, norm]) => ({ loss: loss!.get(0), logits: logits!, gradNorm: norm!.get(0) }));
    const bad = results.findIndex((r) => !Number.isFinite(r.loss));
    if (bad >= 0) {
      for (const [p, d] of before) p.data = d;
      throw new NonFiniteError(`training diverged: the loss is ${results[bad]!.loss} at step ${first + bad}; the parameters were left as before step ${first}. Lower the learning rate or enable gradient clipping.`, first + bad);
    }
    this.stepCount += batches.length;
    if (ema) ema.updates += batches.length;
    return results;
  }

  /** The graph of one step on this batch (to count its FLOPs or inspect it). */
  graph(batch: StepBatch): Graph {
    return this.fn.traced(...this.inputsOf(batch, 0)).graph;
  }

  /** The graph inputs of the i-th step of the next run: x, target, learning rate, step number, EMA decay (0 without an EMA). */
  private inputsOf(b: StepBatch, i: number): NDArray[] {
    const { ema } = this.opts;
    const scalar = (v: number) => NDArray.float32([], [v]);
    return [b.x, b.target, scalar(b.lr), scalar(this.stepCount + 1 + i), scalar(ema ? ema.decayAt(ema.updates + i) : 0)];
  }

  async release(): Promise<void> {
    await this.fn.release();
  }
}
