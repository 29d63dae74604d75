/** `volution benchmark`: inference latency and throughput of one model. */
import type { Command } from 'commander';
import { createInferenceRunner } from '../../backends/passes/export.js';
import { type CliIO, Progress, formatMs, json, table } from '../io.js';
import { type ModelCliOptions, addModelOptions, addThreadsOption, backendDescription, gradientImage, openCliModel, parseIntList, parseNonNegativeInt, parsePositiveInt } from '../options.js';
import { type LatencyStats, timeRuns } from '../timing.js';

interface BenchmarkCliOptions extends ModelCliOptions {
  batch: number[];
  reps: number;
  warmup: number;
  threads: number;
  json?: boolean;
}

export function registerBenchmark(program: Command, io: CliIO): Command {
  const cmd = program
    .command('benchmark')
    .description('inference latency (median, p90) and throughput at the default input size')
    .option('--batch <sizes>', 'comma-separated batch sizes', parseIntList, [1, 8])
    .option('--reps <n>', 'timed runs per batch size', parsePositiveInt, 20)
    .option('--warmup <n>', 'untimed runs first', parseNonNegativeInt, 3)
    .option('--json', 'print JSON');
  addModelOptions(cmd, 'optional');
  addThreadsOption(cmd);
  return cmd
    .addHelpText('after', '\nRuns the exported inference graph (BatchNorms folded, dynamic batch) in ONNX Runtime on a generated\nimage; weights do not change the timing, so --weights is optional. Progress goes to stderr.\n')
    .action(async (opts: BenchmarkCliOptions) => {
      const { model, name, pretrained } = await openCliModel(opts, io);
      const backend = backendDescription(opts.threads);
      const progress = new Progress(io);
      const rows: ({ batch: number; throughput: number } & LatencyStats)[] = [];
      progress.update(`${name}: building`);
      const runner = await createInferenceRunner((x) => model.call(x), pretrained.inputSize, { threads: opts.threads });
      try {
        for (const batch of opts.batch) {
          const x = gradientImage(pretrained, batch);
          const stats = await timeRuns(() => runner.run(x), opts.reps, opts.warmup, (done, total) => progress.update(`${name} batch ${batch}: run ${done}/${total}`));
          rows.push({ batch, ...stats, throughput: (1000 * batch) / stats.median });
        }
      } finally {
        await runner.release();
      }
      progress.done();
      if (opts.json) return io.out(json({ model: name, backend, input: pretrained.inputSize, reps: opts.reps, warmup: opts.warmup, results: rows }));
      io.out(`${name}, input ${pretrained.inputSize.join('×')}, ${backend}, ${opts.reps} runs after ${opts.warmup} warm-ups\n`);
      io.out(table(['batch', 'median ms', 'p90 ms', 'img/s'], rows.map((r) => [String(r.batch), formatMs(r.median), formatMs(r.p90), r.throughput.toFixed(1)]), ['right', 'right', 'right', 'right']));
    });
}
