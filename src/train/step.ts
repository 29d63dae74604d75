/**
 * The compiled train step: forward, loss, gradients, optional global-norm
 * clipping and the optimizer update, traced into ONE graph that runs on
 * ONNX Runtime. Parameters, optimizer state and BatchNorm statistics are
 * inputs of the graph and come back as outputs (Trace.assign), so nothing
 * leaves native code between forward and update.
 */
import { grad } from '../autodiff/grad.js';
import { type CompiledFn, compile } from '../backends/compile.js';
import { NonFiniteError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import type { Module } from '../nn/module.js';
import type { Rng } from '../rng.js';
import { type Tensor, where } from '../tensor/tensor.js';
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
}

export interface StepResult {
  loss: number;
  logits: NDArray;
  /** Global gradient norm before clipping. */
  gradNorm: number;
}

export class TrainStep {
  private readonly fn: CompiledFn;
  private stepCount = 0;

  constructor(
    readonly model: Module,
    readonly opts: TrainStepOptions,
  ) {
    const chunks = chunkGroups(opts.groups, opts.optimizerChunk);
    const params = chunks.flatMap((g) => g.params);
    this.fn = compile(
      (x, target, lr, step) => {
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
    const step = this.stepCount + 1;
    const inputs = [x, target, NDArray.float32([], [lr]), NDArray.float32([], [step])];
    const before = this.fn.traced(...inputs).updates.map(([p]) => [p as { data: NDArray }, p.data] as const);
    const [loss, logits, norm] = await this.fn(...inputs);
    const l = loss!.get(0);
    if (!Number.isFinite(l)) {
      for (const [p, d] of before) p.data = d;
      throw new NonFiniteError(`training diverged: the loss is ${l} at step ${step}; the parameters were left as before this step. Lower the learning rate or enable gradient clipping.`);
    }
    this.stepCount = step;
    return { loss: l, logits: logits!, gradNorm: norm!.get(0) };
  }

  async release(): Promise<void> {
    await this.fn.release();
  }
}
