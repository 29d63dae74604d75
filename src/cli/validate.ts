/**
 * `volution validate`: top-1 / top-5 accuracy and cross-entropy of a model
 * on a data set's validation split, with the model's own evaluation
 * transform (input size, resize/crop, mean/std from its pretrained config).
 */
import type { Command } from 'commander';
import { compile } from '../backends/compile.js';
import { ConfigError } from '../errors.js';
import type { NDArray } from '../ir/ndarray.js';
import { type Split, parseDataSpec } from '../train/data.js';
import { Loader } from '../train/loader.js';
import { emptyTally, tally } from '../train/metrics.js';
import { type CliIO, Progress, json } from './io.js';
import { type ModelCliOptions, addModelOptions, addThreadsOption, backendDescription, openCliModel, parsePositiveInt } from './options.js';

export interface ValidateCliOptions extends ModelCliOptions {
  data: string;
  split: Split;
  batch: number;
  limit?: number;
  threads: number;
  workers: boolean;
  json?: boolean;
}

const HELP = `
Data (--data): as for \`volution train\`: synthetic[:opts], cifar:<dir>, or an image
folder (<dir>/val/<class>/… when it has a val folder, else the held-out tenth of
<dir>/<class>/…). Class i is the i-th class folder in sorted order.

The evaluation transform is the model's: a model directory's recorded
pretrained config (input size, crop_pct, interpolation, mean, std), else the
variant's. Top-5 is top-min(5, classes).

Examples
  volution validate --weights runs/uniformer-synthetic/model --data synthetic
  volution validate --model uniformer_small --weights uniformer_small_in1k.pth --data ./imagenet --limit 5000
`;

async function runValidate(o: ValidateCliOptions, io: CliIO): Promise<void> {
  const { model, name, pretrained } = await openCliModel(o, io);
  const spec = parseDataSpec(o.data);
  const [, h, w] = pretrained.inputSize;
  if (h !== w) throw new ConfigError(`validate: only square inputs are supported, the model takes ${h}×${w}`);
  const loader = await Loader.create(
    {
      data: spec,
      split: o.split,
      transform: { size: h, mean: pretrained.mean, std: pretrained.std, interpolation: pretrained.interpolation, cropPct: pretrained.cropPct },
      batchSize: o.batch,
      shuffle: false,
      dropLast: false,
      seed: 0,
      ...(o.limit !== undefined ? { limit: o.limit } : {}),
    },
    { worker: o.workers },
  );
  const progress = new Progress(io);
  const fn = compile((x) => model.call(x!), { threads: o.threads });
  try {
    const classes = loader.dataset.classes.length;
    if (model.numClasses < classes) throw new ConfigError(`${name} has ${model.numClasses} classes but ${loader.dataset.description} has ${classes}; fine-tune it first (volution train --init … --num-classes ${classes})`);
    if (model.numClasses !== classes) io.err(`warning: ${name} has ${model.numClasses} classes and the data ${classes}; class i of the data is taken to be the model's class i\n`);
    io.err(`validating ${name} on ${loader.dataset.description}, ${loader.length} images at ${h}×${w}, on ${backendDescription(o.threads)}\n`);
    const t = emptyTally();
    const t0 = performance.now();
    loader.prefetch(0, 0);
    for (let b = 0; b < loader.batches; b++) {
      const batch = await loader.get(0, b);
      loader.prefetch(0, b + 1);
      const [logits] = (await fn(batch.x)) as [NDArray];
      tally(t, logits, batch.labels, batch.count);
      const s = (performance.now() - t0) / 1000;
      progress.update(`${t.n}/${loader.length}  top-1 ${((t.top1 / t.n) * 100).toFixed(2)}%  ${(t.n / s).toFixed(0)} img/s`);
    }
    progress.done();
    const seconds = (performance.now() - t0) / 1000;
    const result = { model: name, data: loader.dataset.description, images: t.n, top1: t.top1 / t.n, top5: t.top5 / t.n, loss: t.lossSum / t.n, images_per_s: t.n / seconds, seconds };
    if (o.json) io.out(json(result));
    else io.out(`${name}: top-1 ${(result.top1 * 100).toFixed(2)}%  top-5 ${(result.top5 * 100).toFixed(2)}%  loss ${result.loss.toFixed(4)}  (${t.n} images, ${result.images_per_s.toFixed(1)} img/s)\n`);
  } finally {
    progress.done();
    await loader.close();
    await fn.release();
  }
}

export function registerValidate(program: Command, io: CliIO): Command {
  const cmd = program
    .command('validate')
    .description('top-1/top-5 accuracy and loss of a model on a data set (its validation split)')
    .option('--data <spec>', 'synthetic[:opts], cifar:<dir> or an image folder', 'synthetic')
    .option('--split <split>', 'val or train', 'val')
    .option('--batch <n>', 'batch size', parsePositiveInt, 64)
    .option('--limit <n>', 'only the first n images', parsePositiveInt)
    .option('--no-workers', 'prepare batches on the main thread (no data worker)')
    .option('--json', 'print the result as JSON');
  addModelOptions(cmd, 'optional');
  addThreadsOption(cmd);
  return cmd.addHelpText('after', HELP).action((opts: ValidateCliOptions) => {
    if (opts.split !== 'val' && opts.split !== 'train') throw new ConfigError(`--split must be 'val' or 'train', got '${String(opts.split)}'`);
    return runValidate(opts, io);
  });
}
