/**
 * Options shared by several commands, their parsers, and the line that says
 * which backend runs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import * as ort from 'onnxruntime-node';
import { DEFAULT_THREADS } from '../backends/ort/session.js';
import { ConfigError } from '../errors.js';
import { type LoadedModel, openModel } from '../io/model_dir.js';
import { NDArray } from '../ir/ndarray.js';
import type { PretrainedConfig } from '../models/registry.js';
import type { CliIO } from './io.js';

export function parseNonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number ≥ 0');
  return n;
}

export function parsePositiveInt(value: string): number {
  const n = parseNonNegativeInt(value);
  if (n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return n;
}

/** '1,8' → [1, 8]. */
export function parseIntList(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  return parts.map((p) => {
    try {
      return parsePositiveInt(p);
    } catch {
      throw new InvalidArgumentError(`expected comma-separated whole numbers ≥ 1, e.g. 1,8 (got '${p}')`);
    }
  });
}

/** `--config` takes inline JSON or a path to a JSON file. */
export function parseConfig(value: string): Record<string, unknown> {
  const inline = value.trim().startsWith('{');
  if (!inline && !existsSync(value)) throw new ConfigError(`--config: '${value}' is neither a JSON object nor an existing file`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(inline ? value : readFileSync(value, 'utf8'));
  } catch (err) {
    throw new ConfigError(`--config: ${inline ? 'the JSON' : `'${value}'`} does not parse: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError('--config must be a JSON object of the official constructor options, e.g. \'{"num_classes": 10}\'');
  return parsed as Record<string, unknown>;
}

export interface ModelCliOptions {
  model?: string;
  config?: string;
  weights?: string;
  key?: string;
  strict: boolean;
}

/** --model, --config, --weights, --key, --no-strict. */
export function addModelOptions(cmd: Command, weights: 'required' | 'optional'): Command {
  return cmd
    .option('--model <name>', 'variant (uniformer_small) or family (uniformer) to build; optional when --weights is a model directory')
    .option('--config <json|file>', 'config overrides as JSON or a JSON file, official snake_case options, e.g. \'{"num_classes": 10}\'')
    .addOption(new Option('--weights <file|dir>', `checkpoint (.safetensors, .pth, .pdparams) or model directory${weights === 'optional' ? '; without it, seeded random weights' : ''}`).makeOptionMandatory(weights === 'required'))
    .option('--key <entry>', "training-checkpoint entry holding the weights (e.g. 'model_ema'; default: 'model', then 'state_dict')")
    .option('--no-strict', 'load what fits and report the rest instead of failing on missing/unexpected keys');
}

/** Opens the model the options name, printing loader warnings to stderr. */
export async function openCliModel(opts: ModelCliOptions, io: CliIO): Promise<LoadedModel> {
  const loaded = await openModel({ model: opts.model, config: opts.config === undefined ? undefined : parseConfig(opts.config), weights: opts.weights, key: opts.key, strict: opts.strict });
  for (const w of loaded.warnings) io.err(`warning: ${w}\n`);
  return loaded;
}

export function addThreadsOption(cmd: Command): Command {
  return cmd.addOption(new Option('--threads <n>', 'ONNX Runtime intra-op threads (0: let ONNX Runtime decide)').argParser(parseNonNegativeInt).default(DEFAULT_THREADS));
}

/** Which runtime runs the model, e.g. `onnxruntime-node 1.30.0 (cpu), 2 threads`. */
export function backendDescription(threads: number): string {
  return `onnxruntime-node ${ort.env.versions.node ?? ort.env.versions.common} (cpu), ${threads === 0 ? 'default' : threads} thread${threads === 1 ? '' : 's'}`;
}

/**
 * A deterministic test image already normalised by `prep`: a diagonal
 * gradient in red, vertical in green, horizontal in blue. [batch, C, H, W].
 */
export function gradientImage(prep: Pick<PretrainedConfig, 'inputSize' | 'mean' | 'std'>, batch = 1): NDArray<'float32'> {
  const [c, h, w] = prep.inputSize;
  const x = NDArray.float32([batch, c, h, w]);
  for (let ch = 0; ch < c; ch++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const u = i / Math.max(h - 1, 1);
        const v = j / Math.max(w - 1, 1);
        const value = ch % 3 === 0 ? (u + v) / 2 : ch % 3 === 1 ? u : v;
        const k = ch % 3;
        const normalised = (value - prep.mean[k]!) / prep.std[k]!;
        for (let b = 0; b < batch; b++) x.data[((b * c + ch) * h + i) * w + j] = normalised;
      }
    }
  }
  return x;
}
