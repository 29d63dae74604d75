/**
 * `volution forward`: the scriptable interface. A safetensors file in, a
 * safetensors file out, so any language can drive a model and compare
 * tensors (parity checks, fixtures, other tools).
 */
import type { Command } from 'commander';
import { ConfigError } from '../../errors.js';
import { loadSafetensorsFile, saveSafetensorsFile } from '../../io/safetensors.js';
import type { NDArray } from '../../ir/ndarray.js';
import { runModule } from '../../nn/run.js';
import { trainModeGradients } from '../../train/debug.js';
import { zeroDropRates } from '../../train/modes.js';
import { type CliIO, formatMs } from '../io.js';
import { type ModelCliOptions, addModelOptions, addThreadsOption, backendDescription, openCliModel } from '../options.js';

export const INPUT_KEY = 'input';
export const LOGITS_KEY = 'logits';
export const TARGET_KEY = 'target';

export interface ForwardCliOptions extends ModelCliOptions {
  input: string;
  output: string;
  activations?: boolean;
  train?: boolean;
  target?: string;
  threads: number;
}

const HELP = `
Input file
  A safetensors file holding a tensor named "${INPUT_KEY}": float32 (float64 is
  converted), NCHW [N, C, H, W], already preprocessed (normalised). Other
  tensors in the file are ignored.

Output file (written atomically)
  "${LOGITS_KEY}"                 float32 [N, num_classes], pre-softmax.
  With --activations, also every module call's tensors:
  "<module path>:in.<i>"   the i-th input of the module at that state-dict path
  "<module path>:out"      its output; the k-th call (k > 1) of a module called
                           more than once is keyed "<path>#k:in.<i>", "<path>#k:out".
  Metadata (__metadata__): volution.model, volution.backend.

The model runs in eval mode (BatchNorm running statistics, no dropout or
drop-path) on ONNX Runtime, float32, graph as traced (no BatchNorm folding).
Exit status: 0 on success, 1 on any error (one line on stderr).

With --train --target t.safetensors: one train-mode forward and backward
(BatchNorm on batch statistics, updating its running statistics; every dropout
and drop-path rate set to 0) with mean cross-entropy against the int64 tensor
"${TARGET_KEY}" [N] of t.safetensors, and no optimizer step. The output file holds
the layout of the official fixtures' grads.safetensors:
  "loss"                   float32 [] mean cross-entropy
  "logits_train"           float32 [N, num_classes], train-mode logits
  "target"                 the target, as given
  "grad.<key>"             the gradient of every parameter, by state-dict key
  "bn_after.<key>.running_mean|running_var|num_batches_tracked"
                           every BatchNorm's statistics after the step

Example
  volution forward --model ceit --config '{"embed_dim": 48, "depth": 3, "num_heads": 3, "img_size": 64, "num_classes": 10}' \\
    --weights weights.safetensors --input x.safetensors --output y.safetensors --activations
`;

/** Reads the `input` tensor of a forward input file. */
async function readInput(path: string): Promise<NDArray> {
  const { tensors } = await loadSafetensorsFile(path);
  const x = tensors.get(INPUT_KEY);
  if (!x) throw new ConfigError(`--input '${path}' has no tensor named '${INPUT_KEY}' (it holds: ${[...tensors.keys()].slice(0, 10).join(', ') || 'nothing'})`);
  if (x.rank !== 4) throw new ConfigError(`--input '${path}': '${INPUT_KEY}' must be NCHW [N, C, H, W], got shape [${x.shape.join(', ')}]`);
  return x.dtype === 'float32' ? x : x.astype('float32');
}

/** Reads the int64 `target` tensor [N] of a --target file. */
async function readTarget(path: string, batch: number): Promise<NDArray> {
  const { tensors } = await loadSafetensorsFile(path);
  const t = tensors.get(TARGET_KEY);
  if (!t) throw new ConfigError(`--target '${path}' has no tensor named '${TARGET_KEY}' (it holds: ${[...tensors.keys()].slice(0, 10).join(', ') || 'nothing'})`);
  if (t.dtype !== 'int64') throw new ConfigError(`--target '${path}': '${TARGET_KEY}' must hold int64 class indices, got ${t.dtype}`);
  if (t.rank !== 1 || t.shape[0] !== batch) throw new ConfigError(`--target '${path}': '${TARGET_KEY}' must have shape [${batch}] (one class per input), got [${t.shape.join(', ')}]`);
  return t;
}

const BN_STATS = /\.(running_mean|running_var|num_batches_tracked)$/;

async function runForwardTrain(opts: ForwardCliOptions, io: CliIO): Promise<void> {
  if (opts.target === undefined) throw new ConfigError('--train needs --target <t.safetensors> holding the int64 tensor "target"');
  if (opts.activations) throw new ConfigError('--activations applies to the eval-mode forward, not to --train');
  const { model, name } = await openCliModel(opts, io);
  const input = await readInput(opts.input);
  const target = await readTarget(opts.target, input.shape[0]!);
  for (const [i, v] of Array.from(target.data as BigInt64Array).entries()) {
    if (v < 0n || v >= BigInt(model.numClasses)) throw new ConfigError(`--target: element ${i} is ${v}, outside the model's classes 0…${model.numClasses - 1}`);
  }
  const backend = backendDescription(opts.threads);
  const restore = zeroDropRates(model);
  const t0 = performance.now();
  const r = await trainModeGradients(model, input, target, { threads: opts.threads }).finally(restore);
  const ms = performance.now() - t0;
  const tensors = new Map<string, NDArray>([
    ['loss', r.loss],
    ['logits_train', r.logits],
    [TARGET_KEY, target],
  ]);
  for (const [k, g] of r.grads) tensors.set(`grad.${k}`, g);
  let bn = 0;
  for (const [k, v] of r.buffersAfter) {
    if (!BN_STATS.test(k)) continue;
    tensors.set(`bn_after.${k}`, v);
    bn++;
  }
  await saveSafetensorsFile(opts.output, tensors, { 'volution.model': name, 'volution.backend': backend, 'volution.mode': 'train' });
  io.out(`${name}: train-mode loss ${r.loss.get(0).toFixed(6)}, ${r.grads.size} gradients, ${bn} BatchNorm statistics in ${formatMs(ms)} ms (incl. tracing and session creation) on ${backend}\n`);
  io.out(`wrote ${opts.output}\n`);
}

async function runForward(opts: ForwardCliOptions, io: CliIO): Promise<void> {
  if (opts.train) return runForwardTrain(opts, io);
  if (opts.target !== undefined) throw new ConfigError('--target applies with --train (a train-mode forward and backward)');
  const { model, name } = await openCliModel(opts, io);
  const input = await readInput(opts.input);
  const backend = backendDescription(opts.threads);
  const t0 = performance.now();
  const { output, activations } = await runModule(model, input, { activations: opts.activations === true, threads: opts.threads });
  const ms = performance.now() - t0;
  const tensors = new Map<string, NDArray>([[LOGITS_KEY, output], ...activations]);
  await saveSafetensorsFile(opts.output, tensors, { 'volution.model': name, 'volution.backend': backend });
  io.out(`${name}: ${INPUT_KEY} [${input.shape.join(', ')}] → ${LOGITS_KEY} [${output.shape.join(', ')}]${activations.size ? ` + ${activations.size} activations` : ''} in ${formatMs(ms)} ms (incl. session creation) on ${backend}\n`);
  io.out(`wrote ${opts.output}\n`);
}

export function registerForward(program: Command, io: CliIO): Command {
  const cmd = program
    .command('forward')
    .description('eval-mode forward pass: tensor "input" from a safetensors file → "logits" (and activations) to another; --train: gradients')
    .requiredOption('--input <x.safetensors>', `safetensors file with the NCHW float32 tensor "${INPUT_KEY}"`)
    .requiredOption('--output <y.safetensors>', `safetensors file to write "${LOGITS_KEY}" (and activations) to`)
    .option('--activations', 'also write every module input and output (keys "<path>:in.<i>", "<path>:out")')
    .option('--train', 'train mode: one forward and backward (drop rates 0); writes loss, logits_train, grad.<key>, bn_after.<key>.* (needs --target)')
    .option('--target <t.safetensors>', `with --train: safetensors file with the int64 class indices "${TARGET_KEY}" [N]`);
  addModelOptions(cmd, 'required');
  addThreadsOption(cmd);
  return cmd.addHelpText('after', HELP).action((opts: ForwardCliOptions) => runForward(opts, io));
}
