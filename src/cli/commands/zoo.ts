/**
 * `volution zoo [pattern]`: builds every registered variant and runs it once
 * at its default input: parameters, MACs, a forward pass on a generated
 * image, latency. What the project can do today, in one table.
 */
import type { Command } from 'commander';
import { createInferenceRunner } from '../../backends/passes/export.js';
import { RuntimeFailure, VolutionError } from '../../errors.js';
import { countMacs } from '../../ir/analysis.js';
import { effectivePretrained } from '../../io/model_dir.js';
import { createModel, getVariant, listModels } from '../../models/registry.js';
import { trace } from '../../tensor/function.js';
import { type CliIO, Progress, formatCount, formatMs, json, table } from '../io.js';
import { addThreadsOption, backendDescription, gradientImage, parseNonNegativeInt, parsePositiveInt } from '../options.js';
import { timeRuns } from '../timing.js';

interface ZooCliOptions {
  reps: number;
  warmup: number;
  threads: number;
  json?: boolean;
}

interface ZooRow {
  model: string;
  family: string;
  params?: number;
  macs?: number;
  input?: readonly number[];
  /** Median latency at batch 1, ms. */
  latency_ms?: number;
  /** The output's shape, checked to be [1, classes] and finite. */
  output?: readonly number[];
  paper_top1?: number;
  error?: string;
}

async function zooRow(name: string, opts: ZooCliOptions, onStep: (step: string) => void): Promise<ZooRow> {
  const variant = getVariant(name);
  const row: ZooRow = { model: name, family: variant.family, paper_top1: variant.pretrained.paperTop1 };
  try {
    onStep('building');
    const model = createModel(name).eval();
    const pretrained = effectivePretrained(name, model);
    row.params = model.numParams();
    row.input = pretrained.inputSize;
    row.macs = countMacs(trace((x) => model.call(x), [{ dtype: 'float32', shape: [1, ...pretrained.inputSize], name: 'input' }]).graph);
    onStep('exporting');
    const runner = await createInferenceRunner((x) => model.call(x), pretrained.inputSize, { threads: opts.threads });
    try {
      const x = gradientImage(pretrained);
      const out = await runner.run(x);
      out.assertFinite(`${name} output`);
      row.output = out.shape;
      const stats = await timeRuns(() => runner.run(x), opts.reps, opts.warmup, (done, total) => onStep(`run ${done}/${total}`));
      row.latency_ms = stats.median;
    } finally {
      await runner.release();
    }
  } catch (err) {
    if (!(err instanceof VolutionError)) throw err;
    row.error = err.message;
  }
  return row;
}

export function registerZoo(program: Command, io: CliIO): Command {
  const cmd = program
    .command('zoo')
    .description('build and run every registered variant (or those matching a glob): parameters, MACs, latency')
    .argument('[pattern]', 'glob over variant names', '*')
    .option('--reps <n>', 'timed runs per model', parsePositiveInt, 5)
    .option('--warmup <n>', 'untimed runs first', parseNonNegativeInt, 1)
    .option('--json', 'print JSON');
  addThreadsOption(cmd);
  return cmd
    .addHelpText('after', '\nWeights are seeded random (the zoo checks that every variant builds, traces, exports and runs;\naccuracy needs the published checkpoints). Input: a generated gradient image at each variant\'s\ndefault size, batch 1. Models that fail are reported in the table and make the exit status 1.\n')
    .action(async (pattern: string, opts: ZooCliOptions) => {
      const names = listModels(pattern);
      const backend = backendDescription(opts.threads);
      const progress = new Progress(io);
      const rows: ZooRow[] = [];
      for (const [i, name] of names.entries()) rows.push(await zooRow(name, opts, (step) => progress.update(`[${i + 1}/${names.length}] ${name}: ${step}`)));
      progress.done();
      const failed = rows.filter((r) => r.error !== undefined);
      if (opts.json) io.out(json({ backend, reps: opts.reps, models: rows }));
      else {
        io.out(`${names.length} variant${names.length === 1 ? '' : 's'} matching '${pattern}', batch 1, seeded random weights, ${backend}\n`);
        io.out(
          table(
            ['model', 'family', 'params', 'MACs', 'input', 'ms', 'paper top-1', 'status'],
            rows.map((r) => [r.model, r.family, r.params === undefined ? '' : formatCount(r.params), r.macs === undefined ? '' : formatCount(r.macs), r.input?.join('×') ?? '', r.latency_ms === undefined ? '' : formatMs(r.latency_ms), r.paper_top1?.toFixed(1) ?? '', r.error ?? 'ok']),
            ['left', 'left', 'right', 'right', 'left', 'right', 'right', 'left'],
          ),
        );
      }
      if (failed.length) throw new RuntimeFailure(`${failed.length} of ${rows.length} variants failed: ${failed.map((r) => r.model).join(', ')}`);
    });
}
