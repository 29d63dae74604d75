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
import { type CliIO, formatMs } from '../io.js';
import { type ModelCliOptions, addModelOptions, addThreadsOption, backendDescription, openCliModel } from '../options.js';

export const INPUT_KEY = 'input';
export const LOGITS_KEY = 'logits';

export interface ForwardCliOptions extends ModelCliOptions {
  input: string;
  output: string;
  activations?: boolean;
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

async function runForward(opts: ForwardCliOptions, io: CliIO): Promise<void> {
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
    .description('eval-mode forward pass: tensor "input" from a safetensors file → "logits" (and activations) to another')
    .requiredOption('--input <x.safetensors>', `safetensors file with the NCHW float32 tensor "${INPUT_KEY}"`)
    .requiredOption('--output <y.safetensors>', `safetensors file to write "${LOGITS_KEY}" (and activations) to`)
    .option('--activations', 'also write every module input and output (keys "<path>:in.<i>", "<path>:out")');
  addModelOptions(cmd, 'required');
  addThreadsOption(cmd);
  return cmd.addHelpText('after', HELP).action((opts: ForwardCliOptions) => runForward(opts, io));
}
