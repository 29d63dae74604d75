/** Latency statistics for benchmark and zoo. */

export interface LatencyStats {
  /** Milliseconds. */
  median: number;
  p90: number;
  min: number;
  runs: number;
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function latencyStats(ms: readonly number[]): LatencyStats {
  const sorted = [...ms].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), p90: percentile(sorted, 90), min: sorted[0]!, runs: sorted.length };
}

/**
 * Times `run`: `warmup` untimed calls, then `reps` timed ones.
 * `onProgress(done, total)` is called after each call.
 */
export async function timeRuns(run: () => Promise<unknown>, reps: number, warmup: number, onProgress: (done: number, total: number) => void = () => undefined): Promise<LatencyStats> {
  const total = warmup + reps;
  const times: number[] = [];
  for (let i = 0; i < total; i++) {
    const t0 = performance.now();
    await run();
    if (i >= warmup) times.push(performance.now() - t0);
    onProgress(i + 1, total);
  }
  return latencyStats(times);
}
