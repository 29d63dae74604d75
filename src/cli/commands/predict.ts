/** `volution predict`: classify images with a pretrained model. */
import type { Command } from 'commander';
import { createInferenceRunner } from '../../backends/passes/export.js';
import { imagenetClassNames, loadImages } from '../../io/image.js';
import type { NDArray } from '../../ir/ndarray.js';
import { type CliIO, json } from '../io.js';
import { type ModelCliOptions, addModelOptions, addThreadsOption, backendDescription, openCliModel, parsePositiveInt } from '../options.js';

interface PredictCliOptions extends ModelCliOptions {
  topk: number;
  batch: number;
  json?: boolean;
  threads: number;
}

export interface Prediction {
  index: number;
  label: string;
  probability: number;
}

/** Softmax of one row of logits, then its k most probable classes. */
export function topK(logits: NDArray, row: number, k: number, labels: (i: number) => string): Prediction[] {
  const n = logits.shape[1]!;
  const values = Array.from({ length: n }, (_, j) => logits.get(row * n + j));
  const max = Math.max(...values);
  const exps = values.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps
    .map((e, index) => ({ index, label: labels(index), probability: e / sum }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}

export function registerPredict(program: Command, io: CliIO): Command {
  const cmd = program
    .command('predict')
    .description("classify images (JPEG, PNG, WebP), preprocessed per the model's pretrained config")
    .argument('<images...>', 'image files')
    .option('--topk <k>', 'classes to show per image', parsePositiveInt, 5)
    .option('--batch <n>', 'images per forward pass', parsePositiveInt, 8)
    .option('--json', 'print JSON');
  addModelOptions(cmd, 'required');
  addThreadsOption(cmd);
  return cmd.action(async (images: string[], opts: PredictCliOptions) => {
    const { model, name, pretrained } = await openCliModel(opts, io);
    const names = model.numClasses === 1000 ? imagenetClassNames() : undefined;
    const label = (i: number) => names?.[i] ?? `class ${i}`;
    const backend = backendDescription(opts.threads);
    const results: { image: string; predictions: Prediction[] }[] = [];
    const runner = await createInferenceRunner((t) => model.call(t), pretrained.inputSize, { threads: opts.threads });
    try {
      for (let start = 0; start < images.length; start += opts.batch) {
        const paths = images.slice(start, start + opts.batch);
        const x = await loadImages(paths, pretrained);
        const logits = await runner.run(x);
        paths.forEach((image, i) => results.push({ image, predictions: topK(logits, i, Math.min(opts.topk, model.numClasses), label) }));
      }
    } finally {
      await runner.release();
    }
    if (opts.json) return io.out(json({ model: name, backend, results }));
    io.out(`${name} on ${backend}\n`);
    for (const r of results) {
      io.out(`${r.image}\n`);
      r.predictions.forEach((p, i) => io.out(`  ${String(i + 1).padStart(2)}. ${`${p.label} (${p.index})`.padEnd(40)} ${(100 * p.probability).toFixed(2).padStart(6)}%\n`));
    }
  });
}
