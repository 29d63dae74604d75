/**
 * Exponential moving average of a model's weights (timm's ModelEmaV2/V3,
 * used by UniFormer's and DeiT's recipes as `--model-ema`): after every
 * optimizer step, for every floating tensor of the state dict (parameters
 * and BatchNorm running statistics)
 *
 *   ema ← decay · ema + (1 − decay) · model
 *
 * Integer buffers (num_batches_tracked) are copied. With `warmup`, the decay
 * ramps up as min(decay, (1 + n) / (10 + n)) after n updates (timm V3's
 * warmup), so that short runs get a useful average; without it the average
 * starts from the initial weights, as in the official recipes.
 *
 * The update runs in JavaScript over the state dict's arrays, outside the
 * train-step graph: it touches each weight once per step, which is small
 * next to the step itself.
 */
import { ConfigError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import type { Module } from '../nn/module.js';

export interface EmaOptions {
  /** Decay per update, e.g. 0.9998 (timm's model_ema_decay; UniFormer's recipe uses 0.99996). */
  decay: number;
  /** Ramp the decay up over the first updates (timm ModelEmaV3's warmup). Default false. */
  warmup?: boolean;
}

export class ModelEma {
  /** The averaged tensors, by state-dict key. */
  readonly tensors = new Map<string, NDArray>();
  /** Number of updates so far. */
  updates = 0;

  constructor(
    readonly model: Module,
    readonly opts: EmaOptions,
  ) {
    if (!(opts.decay >= 0 && opts.decay < 1)) throw new ConfigError(`EMA decay must be in [0, 1), got ${opts.decay}`);
    for (const [k, p] of model.namedTensors()) this.tensors.set(k, copyArray(p.data));
  }

  /** The decay the next update applies. */
  currentDecay(): number {
    return this.opts.warmup ? Math.min(this.opts.decay, (1 + this.updates) / (10 + this.updates)) : this.opts.decay;
  }

  /** Folds the model's current weights into the average. */
  update(): void {
    const d = this.currentDecay();
    for (const [k, p] of this.model.namedTensors()) {
      const e = this.tensors.get(k)!;
      const src = p.data.data;
      if (p.data.dtype === 'float32' || p.data.dtype === 'float64') {
        const dst = e.data as Float32Array | Float64Array;
        const s = src as Float32Array | Float64Array;
        for (let i = 0; i < dst.length; i++) dst[i] = d * dst[i]! + (1 - d) * s[i]!;
      } else {
        (e.data as typeof src).set(src as never);
      }
    }
    this.updates++;
  }

  /** The averaged weights as a state dict (for checkpoints and saving). */
  stateDict(): Map<string, NDArray> {
    return new Map(this.tensors);
  }

  loadStateDict(sd: ReadonlyMap<string, NDArray>, updates: number): void {
    for (const [k, e] of this.tensors) {
      const v = sd.get(k);
      if (!v || v.shape.join() !== e.shape.join()) throw new ConfigError(`EMA state: missing or mis-shaped tensor '${k}'`);
      this.tensors.set(k, v.dtype === e.dtype ? copyArray(v) : v.astype(e.dtype));
    }
    this.updates = updates;
  }

  /**
   * Runs `fn` with the model holding the averaged weights (to evaluate or
   * save them), then puts the live weights back.
   */
  async withWeights<T>(fn: () => Promise<T>): Promise<T> {
    const live = this.model.namedTensors().map(([k, p]) => [p, p.data, this.tensors.get(k)!] as const);
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
