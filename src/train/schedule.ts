/**
 * Learning-rate schedules as pure functions of training progress, measured
 * in epochs (fractional: the loop asks once per step, at `step /
 * stepsPerEpoch`). The formulas are timm's (`CosineLRScheduler`,
 * `StepLRScheduler`): a linear warmup from `warmupLr` to `lr` over
 * `warmupEpochs`, then the cosine from `lr` down to `minLr` over the
 * remaining epochs (timm's warmup_prefix), or the step decay counted in
 * absolute epochs (as torch's StepLR).
 */
import { ConfigError } from '../errors.js';

export type ScheduleKind = 'cosine' | 'step' | 'constant';

export interface ScheduleOptions {
  kind: ScheduleKind;
  /** Peak learning rate (reached at the end of the warmup). */
  lr: number;
  /** Length of the run in epochs (cosine decays to `minLr` at its end). */
  epochs: number;
  warmupEpochs?: number;
  /** Learning rate at step 0 of the warmup (timm's warmup_lr, default 1e-6). */
  warmupLr?: number;
  /** Floor of the cosine (timm's min_lr, default 1e-5 · lr / 5e-4, i.e. lr / 50). */
  minLr?: number;
  /** Step schedule: multiply by `decayRate` every `decayEpochs` (defaults 30 and 0.1). */
  decayEpochs?: number;
  decayRate?: number;
}

export interface LrSchedule {
  readonly options: Readonly<ScheduleOptions>;
  /** The learning rate at `epoch` (fractional) of training. */
  at(epoch: number): number;
}

export function makeSchedule(opts: ScheduleOptions): LrSchedule {
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new ConfigError(`learning-rate schedule: ${what}`);
  };
  check(['cosine', 'step', 'constant'].includes(opts.kind), `unknown kind '${String(opts.kind)}' (cosine, step, constant)`);
  check(Number.isFinite(opts.lr) && opts.lr > 0, `lr must be a positive number, got ${opts.lr}`);
  check(Number.isFinite(opts.epochs) && opts.epochs > 0, `epochs must be positive, got ${opts.epochs}`);
  const warmup = opts.warmupEpochs ?? 0;
  check(warmup >= 0 && warmup <= opts.epochs, `warmup (${warmup} epochs) must lie within the run (${opts.epochs} epochs)`);
  const warmupLr = opts.warmupLr ?? 1e-6;
  const minLr = opts.minLr ?? opts.lr / 50;
  check(minLr >= 0 && minLr <= opts.lr, `min lr ${minLr} must be in [0, lr]`);
  const decayEpochs = opts.decayEpochs ?? 30;
  const decayRate = opts.decayRate ?? 0.1;
  check(decayEpochs > 0 && decayRate > 0 && decayRate <= 1, `step decay needs decay epochs > 0 and a rate in (0, 1], got ${decayEpochs} and ${decayRate}`);
  const options: ScheduleOptions = { ...opts, warmupEpochs: warmup, warmupLr, minLr, decayEpochs, decayRate };

  const after = (t: number): number => {
    switch (opts.kind) {
      case 'constant':
        return opts.lr;
      case 'step':
        // absolute epochs, like torch's StepLR: decay at decayEpochs, 2·decayEpochs, …
        return opts.lr * decayRate ** Math.floor(t / decayEpochs);
      // cosine
      default: {
        const span = opts.epochs - warmup;
        const progress = span > 0 ? Math.min(1, Math.max(0, (t - warmup) / span)) : 1;
        return minLr + 0.5 * (opts.lr - minLr) * (1 + Math.cos(Math.PI * progress));
      }
    }
  };
  return {
    options,
    at: (epoch) => (epoch < warmup ? warmupLr + (epoch / warmup) * (opts.lr - warmupLr) : after(epoch)),
  };
}
