/** `volution export`: an ONNX inference graph, BatchNorms and conv residuals folded, checked in ONNX Runtime before it is written. */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { compile } from '../../backends/compile.js';
import { checkExport, exportInference } from '../../backends/passes/export.js';
import { RuntimeFailure } from '../../errors.js';
import { describeModel, writeFileAtomic } from '../../io/model_dir.js';
import { NDArray } from '../../ir/ndarray.js';
import { Rng } from '../../rng.js';
import type { Tensor } from '../../tensor/tensor.js';
import { type CliIO, formatCount, formatInt } from '../io.js';
import { type ModelCliOptions, addModelOptions, addThreadsOption, backendDescription, openCliModel, parsePositiveInt } from '../options.js';

interface ExportCliOptions extends ModelCliOptions {
  out: string;
  batch: number | 'dynamic';
  fold: boolean;
  contribOps: boolean;
  threads: number;
}

/** The largest max |Δ| / max |reference| accepted between the exported file and the traced model. */
export const EXPORT_TOLERANCE = 1e-4;

function parseBatch(value: string): number | 'dynamic' {
  if (value === 'dynamic') return value;
  try {
    return parsePositiveInt(value);
  } catch {
    throw new InvalidArgumentError("expected a whole number ≥ 1 or 'dynamic'");
  }
}

const plural = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

function randomInput(rng: Rng, shape: readonly number[]): NDArray<'float32'> {
  const x = NDArray.float32(shape);
  for (let i = 0; i < x.size; i++) x.data[i] = rng.normal();
  return x;
}

export function registerExport(program: Command, io: CliIO): Command {
  const cmd = program
    .command('export')
    .description('export an ONNX inference graph (opset 17, BatchNorms and depthwise-conv residuals folded into convolutions), checked in ONNX Runtime')
    .requiredOption('--out <file.onnx>', 'where to write the model (atomically)')
    .option('--batch <n|dynamic>', "'dynamic' (default: a symbolic batch dimension) or a fixed batch size", parseBatch, 'dynamic')
    .option('--no-fold', 'keep the graph as traced (default: fold each BatchNorm into the convolution before it or an unpadded one after it, and x + dwconv(x) into the depthwise conv)')
    .option('--contrib-ops', "use ONNX Runtime's contrib operators (fused GELU, a + y·s as one GatedAdd, self-attention as one Attention kernel): the graph volution itself runs, faster in ONNX Runtime but not portable to other runtimes", false);
  addModelOptions(cmd, 'optional');
  addThreadsOption(cmd);
  return cmd
    .addHelpText('after', '\nThe file has one input "input" [batch, C, H, W] float32 and one output "logits" [batch, classes];\nits metadata holds the volution config and the preprocessing. Before writing, the file is run in\nONNX Runtime on random inputs (batch 1 and 3 for a dynamic batch) and compared with the traced,\nunfolded model; a max relative difference above 1e-4 is an error and nothing is written.\n')
    .action(async (opts: ExportCliOptions) => {
      const { model, name, pretrained } = await openCliModel(opts, io);
      if (opts.weights === undefined) io.err('warning: no --weights: exporting seeded random weights\n');
      const { pretrained: preprocessing, ...identity } = describeModel(model, name, pretrained);
      const fn = (x: Tensor) => model.call(x);
      const exported = exportInference(fn, pretrained.inputSize, {
        batch: opts.batch,
        fold: opts.fold,
        contribOps: opts.contribOps,
        docString: `${name} exported by volution`,
        metadata: { 'volution.config': JSON.stringify(identity), 'volution.pretrained': JSON.stringify(preprocessing) },
      });
      const reference = compile(fn, { threads: opts.threads });
      const rng = new Rng(0);
      const batches = opts.batch === 'dynamic' ? [1, 3] : [opts.batch];
      let diff: number;
      try {
        diff = await checkExport(exported.bytes, batches.map((b) => randomInput(rng, [b, ...pretrained.inputSize])), async (x) => (await reference(x))[0]!, { threads: opts.threads });
      } finally {
        await reference.release();
      }
      const check = `max relative difference ${diff.toExponential(2)} at batch ${batches.join(' and ')} (${backendDescription(opts.threads)})`;
      if (!(diff <= EXPORT_TOLERANCE)) throw new RuntimeFailure(`the exported graph disagrees with the traced model: ${check}, above ${EXPORT_TOLERANCE}; nothing written`);
      await writeFileAtomic(opts.out, exported.bytes);
      const nodes = exported.graph.graph.liveNodes().length;
      io.out(`wrote ${opts.out}: ${name}, batch ${opts.batch}, ${formatCount(exported.bytes.length, 'B')}, ${formatInt(nodes)} graph nodes, ${plural(exported.folded.batchNorms, 'BatchNorm')} and ${plural(exported.folded.residuals, 'residual')} folded\n`);
      io.out(`check against the unfolded model in ONNX Runtime: ${check}\n`);
    });
}
