/**
 * Metrics: top-k accuracy and cross-entropy on logits in JavaScript, and
 * the run's metrics log (JSON lines, appended as the run goes).
 */
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, writeFile } from 'node:fs/promises';
import type { NDArray } from '../ir/ndarray.js';

export interface Tally {
  /** Samples counted. */
  n: number;
  top1: number;
  top5: number;
  /** Sum of per-sample cross-entropy (plain, no smoothing). */
  lossSum: number;
}

export function emptyTally(): Tally {
  return { n: 0, top1: 0, top5: 0, lossSum: 0 };
}

/**
 * Adds the first `count` rows of `logits` [B, K] against hard `labels`:
 * top-1 and top-k hits (k = min(5, K)) and the summed cross-entropy.
 */
export function tally(t: Tally, logits: NDArray, labels: ArrayLike<number>, count = labels.length): Tally {
  const [, k] = logits.shape as [number, number];
  const d = logits.data as Float32Array;
  for (let i = 0; i < count; i++) {
    const y = labels[i]!;
    if (y < 0) continue;
    const row = i * k;
    const target = d[row + y]!;
    let above = 0;
    let max = -Infinity;
    for (let j = 0; j < k; j++) {
      const v = d[row + j]!;
      // Ties count against the sample (a constant output is not "correct").
      if (v > target || (v === target && j < y)) above++;
      if (v > max) max = v;
    }
    let sum = 0;
    for (let j = 0; j < k; j++) sum += Math.exp(d[row + j]! - max);
    t.lossSum += Math.log(sum) + max - target;
    if (above === 0) t.top1++;
    if (above < 5) t.top5++;
    t.n++;
  }
  return t;
}

/** Top-1 hits of the first `count` rows (argmax, first index on ties). */
export function top1Hits(logits: NDArray, labels: ArrayLike<number>, count = labels.length): number {
  return tally(emptyTally(), logits, labels, count).top1;
}

/** One line of metrics.jsonl. */
export type MetricsRecord =
  /** `epoch`: 1-based, the epoch the step belongs to; `step`: optimizer steps so far. */
  | { kind: 'step'; epoch: number; step: number; loss: number; lr: number; grad_norm: number; time: number }
  /** `epoch`: epochs completed (1-based). */
  | ({ kind: 'epoch'; epoch: number; step: number; time: number } & EpochMetrics)
  | { kind: 'event'; step: number; time: number; event: string; message: string };

export interface EpochMetrics {
  lr: number;
  train_loss: number;
  train_top1: number;
  val_loss: number;
  val_top1: number;
  val_top5: number;
  ema_val_top1?: number;
  ema_val_top5?: number;
  ema_val_loss?: number;
  images_per_s: number;
  /** Per batch: making it (in the data worker) and waiting for it (the main thread); the step itself. */
  data_ms: number;
  data_wait_ms: number;
  step_ms: number;
  eval_s: number;
  epoch_s: number;
}

/** The run's metrics.jsonl: appended line by line, readable while the run goes. */
export class MetricsLog {
  constructor(readonly path: string) {}

  static read(path: string): MetricsRecord[] {
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as MetricsRecord];
        } catch {
          return [];
        }
      });
  }

  records(): MetricsRecord[] {
    return MetricsLog.read(this.path);
  }

  async append(r: MetricsRecord): Promise<void> {
    await appendFile(this.path, `${JSON.stringify(r)}\n`);
  }

  /**
   * On resume: keeps what the checkpoint's state covers (records up to
   * `step`, and the epoch records of finished epochs), so the log reads as
   * if the run had never stopped.
   */
  async truncateAfter(step: number, epochsDone: number): Promise<void> {
    const keep = this.records().filter((r) => (r.kind === 'epoch' ? r.epoch <= epochsDone : r.step <= step));
    await writeFile(this.path, keep.map((r) => `${JSON.stringify(r)}\n`).join(''));
  }
}
