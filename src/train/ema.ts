/**
 * Exponential moving average of a model's weights (timm's ModelEmaV2/V3,
 * used by UniFormer's and DeiT's recipes as `--model-ema`): after every
 * optimizer step, for every floating tensor of the state dict (parameters
 * and BatchNorm running statistics)
 *
 *   ema ← decay · ema + (1 − decay) · model
 *
 * Integer buffers (num_batches_tracked) are the model's own, as timm copies
 * them on every update. With `warmup`, the decay ramps up as
 * min(decay, (1 + n) / (10 + n)) after n updates (timm V3's warmup), so that
 * short runs get a useful average; without it the average starts from the
 * initial weights, as in the official recipes.
 *
 * The update is part of the compiled train step (`TrainStep`'s `ema`
 * option): the averages are buffers its graph reads and assigns after the
 * optimizer update, so every step of a run updates them.
 */
import { ConfigError } from '../errors.js';
import { NDArray, isFloat } from '../ir/ndarray.js';
import type { Module } from '../nn/module.js';
import { Parameter, type Tensor } from '../tensor/tensor.js';
import { activeTrace } from '../tensor/trace.js';

export interface EmaOptions {
  /** Decay per update, e.g. 0.9998 (timm's model_ema_decay; UniFormer's recipe uses 0.99996). */
  decay: number;
  /** Ramp the decay up over the first updates (timm ModelEmaV3's warmup). Default false. */
  warmup?: boolean;
}

export class ModelEma {
  /** The averaged floating tensors, by state-dict key. */
  private readonly averages = new Map<string, Parameter>();
  /** Number of updates so far. */
  updates = 0;

  constructor(
    readonly model: Module,
    readonly opts: EmaOptions,
  ) {
    if (!(opts.decay >= 0 && opts.decay < 1)) throw new ConfigError(`EMA decay must be in [0, 1), got ${opts.decay}`);
    for (const [k, p] of model.namedTensors()) {
      if (isFloat(p.data.dtype)) this.averages.set(k, new Parameter(copyArray(p.data), { name: `ema.${k}`, trainable: false }));
    }
  }

  /** The decay of update number `n` (0-based). */
  decayAt(n: number): number {
    return this.opts.warmup ? Math.min(this.opts.decay, (1 + n) / (10 + n)) : this.opts.decay;
  }

  /**
   * Inside a trace: folds the model's current weights (those the step just
   * assigned) into the average with `decay`, a graph scalar. The caller
   * counts the update (`updates`) once the graph has run.
   */
  traceUpdate(decay: Tensor): void {
    const t = activeTrace();
    const keep = decay.neg().add(1);
    for (const [k, p] of this.model.namedTensors()) {
      const e = this.averages.get(k);
      if (e) t.assign(e, e.mul(decay).add(p.mul(keep)).value);
    }
  }

  /** The averaged weights as a state dict (for checkpoints and saving), integer buffers the model's. */
  stateDict(): Map<string, NDArray> {
    return new Map(this.model.namedTensors().map(([k, p]) => [k, this.averages.get(k)?.data ?? p.data]));
  }

  loadStateDict(sd: ReadonlyMap<string, NDArray>, updates: number): void {
    for (const [k, e] of this.averages) {
      const v = sd.get(k);
      if (!v || v.shape.join() !== e.data.shape.join()) throw new ConfigError(`EMA state: missing or mis-shaped tensor '${k}'`);
      e.data = v.dtype === e.data.dtype ? copyArray(v) : v.astype(e.data.dtype);
    }
    this.updates = updates;
  }

  /**
   * Runs `fn` with the model holding the averaged weights (to evaluate or
   * save them), then puts the live weights back.
   */
  async withWeights<T>(fn: () => Promise<T>): Promise<T> {
    const live = this.model.namedTensors().flatMap(([k, p]) => {
      const e = this.averages.get(k);
      return e ? [[p, p.data, e.data] as const] : [];
    });
    for (const [p, , e] of live) p.data = e;
    try {
      return await fn();
    } finally {
      for (const [p, d] of live) p.data = d;
    }
  }
}

/** A copy of an array (its own buffer). */
export function copyArray<D extends NDArray['dtype']>(a: NDArray<D>): NDArray<D> {
  return new NDArray(a.dtype, a.shape, a.data.slice() as NDArray<D>['data']);
}
