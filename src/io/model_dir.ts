/**
 * Models on disk. A saved model is one directory, the layout timm and
 * Hugging Face use:
 *
 *   config.json          {"architecture", "family", "config": {official snake_case options},
 *                         "pretrained": {input_size, mean, std, interpolation, crop_pct, num_classes, ...},
 *                         "volution_version"}
 *   model.safetensors    the state dict; its __metadata__ repeats the config as JSON under
 *                        `volution.config`, so a lone weights file still says what it is
 *
 * Also: loading a bare checkpoint (safetensors, torch, pdparams) into a model,
 * with the family's key mapping and a warning when the checkpoint records a
 * config that differs from the model's (options such as UniFormer's head_dim
 * change no weight shape, so a wrong one loads silently and gives wrong outputs).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfigError, FormatError, StateDictError, VolutionError } from '../errors.js';
import type { NDArray } from '../ir/ndarray.js';
import type { LoadReport } from '../nn/module.js';
import { type ClassifierModel, type PretrainedConfig, createModel, getFamily, pretrainedConfig, resolveConfig } from '../models/registry.js';
import { type CheckpointFile, loadCheckpointFile } from './index.js';
import { saveSafetensorsFile, writeFileAtomic } from './safetensors.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
/** The safetensors metadata key holding the model's config (as in config.json, without `pretrained`). */
export const CONFIG_METADATA_KEY = 'volution.config';

/** The version written into saved models. */
export const VOLUTION_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The pretrained config in config.json's snake_case (timm's `pretrained_cfg` names). */
export interface PretrainedJson {
  input_size: readonly [number, number, number];
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
  interpolation: 'bicubic' | 'bilinear';
  crop_pct: number;
  num_classes: number;
  weights_url?: string;
  weights_format?: 'pth' | 'pdparams' | 'safetensors';
  paper_top1?: number;
}

/** The content of config.json. */
export interface ModelDirConfig {
  /** The variant or family name the model was created as. */
  architecture: string;
  family: string;
  /** The full config, the official constructor's snake_case options. */
  config: Record<string, unknown>;
  pretrained: PretrainedJson;
  volution_version: string;
}

export function pretrainedToJson(p: PretrainedConfig): PretrainedJson {
  return {
    input_size: p.inputSize,
    mean: p.mean,
    std: p.std,
    interpolation: p.interpolation,
    crop_pct: p.cropPct,
    num_classes: p.numClasses,
    ...(p.weights ? { weights_url: p.weights.url, weights_format: p.weights.format } : {}),
    ...(p.paperTop1 !== undefined ? { paper_top1: p.paperTop1 } : {}),
  };
}

function isTriple(v: unknown): v is [number, number, number] {
  return Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
}

export function pretrainedFromJson(j: PretrainedJson, where: string): PretrainedConfig {
  const bad = (what: string) => new FormatError(`${where}: pretrained.${what}`);
  if (!isTriple(j.input_size) || !j.input_size.every((d) => Number.isInteger(d) && d > 0)) throw bad('input_size must be [C, H, W]');
  if (!isTriple(j.mean) || !isTriple(j.std) || j.std.some((s) => s <= 0)) throw bad('mean and std must be three numbers (std > 0)');
  if (j.interpolation !== 'bicubic' && j.interpolation !== 'bilinear') throw bad(`interpolation must be 'bicubic' or 'bilinear', got ${JSON.stringify(j.interpolation)}`);
  if (!(j.crop_pct > 0 && j.crop_pct <= 1)) throw bad(`crop_pct must be in (0, 1], got ${j.crop_pct}`);
  if (!Number.isInteger(j.num_classes) || j.num_classes < 0) throw bad('num_classes must be an integer ≥ 0');
  return {
    inputSize: j.input_size,
    mean: j.mean,
    std: j.std,
    interpolation: j.interpolation,
    cropPct: j.crop_pct,
    numClasses: j.num_classes,
    ...(j.weights_url ? { weights: { url: j.weights_url, format: j.weights_format ?? 'safetensors' } } : {}),
    ...(j.paper_top1 !== undefined ? { paperTop1: j.paper_top1 } : {}),
  };
}

/** An `img_size` option as [H, W] (an int or a pair), or undefined. */
function imageSize(v: unknown): [number, number] | undefined {
  if (typeof v === 'number') return [v, v];
  return Array.isArray(v) && v.length === 2 && v.every((d) => typeof d === 'number') ? [v[0] as number, v[1] as number] : undefined;
}

/**
 * The evaluation transform of a model built as `name`: the variant's, with
 * the input size and class count the model's own config has when the user
 * changed them (`img_size`, `num_classes` overrides).
 */
export function effectivePretrained(name: string, model: ClassifierModel): PretrainedConfig {
  const base = pretrainedConfig(name, model.config);
  const size = (model.config as { img_size?: unknown }).img_size;
  const configured = (resolveConfig(name).config as { img_size?: unknown }).img_size;
  const resized = JSON.stringify(size) === JSON.stringify(configured) ? undefined : imageSize(size);
  return { ...base, ...(resized ? { inputSize: [base.inputSize[0], ...resized] as const } : {}), numClasses: model.numClasses };
}

export interface SaveOptions {
  /** The variant or family name the model was created as (its `architecture`). */
  name: string;
  /** The evaluation transform to record (default: the variant's, adjusted to the model's config). */
  pretrained?: PretrainedConfig;
}

/** The config.json record of a model created as `name`. */
export function describeModel(model: ClassifierModel, name: string, pretrained = effectivePretrained(name, model)): ModelDirConfig {
  const { family } = resolveConfig(name);
  return { architecture: name, family: family.name, config: { ...(model.config as Record<string, unknown>) }, pretrained: pretrainedToJson(pretrained), volution_version: VOLUTION_VERSION };
}

/** Saves `model` as a model directory (created if needed); each file is written atomically. */
export async function saveModel(model: ClassifierModel, dir: string, opts: SaveOptions): Promise<ModelDirConfig> {
  const record = describeModel(model, opts.name, opts.pretrained);
  await mkdir(dir, { recursive: true });
  const { pretrained: _, ...identity } = record;
  await saveSafetensorsFile(join(dir, WEIGHTS_FILE), model.stateDict(), { format: 'pt', [CONFIG_METADATA_KEY]: JSON.stringify(identity) });
  await writeFileAtomic(join(dir, CONFIG_FILE), `${JSON.stringify(record, null, 2)}\n`);
  return record;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads and checks a model directory's config.json. */
export async function readModelConfig(dir: string): Promise<ModelDirConfig> {
  const path = join(dir, CONFIG_FILE);
  if (!existsSync(path)) throw new ConfigError(`'${dir}' is not a volution model directory: it has no ${CONFIG_FILE} (save one with saveModel, or pass a weights file together with --model)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new FormatError(`${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isRecord(parsed) || typeof parsed.architecture !== 'string' || typeof parsed.family !== 'string' || !isRecord(parsed.config) || !isRecord(parsed.pretrained)) {
    throw new FormatError(`${path} must hold {"architecture": string, "family": string, "config": {...}, "pretrained": {...}}`);
  }
  return parsed as unknown as ModelDirConfig;
}

export interface LoadedModel {
  model: ClassifierModel;
  /** The variant or family name (the directory's `architecture`). */
  name: string;
  pretrained: PretrainedConfig;
  /** Non-fatal findings to show the user (e.g. a checkpoint config that differs from the model's). */
  warnings: string[];
}

/** Rebuilds a saved model from its directory and loads its weights strictly. Eval mode. */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const record = await readModelConfig(dir);
  const model = createModel(record.family, record.config);
  const { warnings } = await loadWeights(model, join(dir, WEIGHTS_FILE), { family: record.family });
  return { model: model.eval(), name: record.architecture, pretrained: pretrainedFromJson(record.pretrained, join(dir, CONFIG_FILE)), warnings };
}

export interface LoadWeightsOptions {
  /** Throw on missing, unexpected or mis-shaped keys (default true). */
  strict?: boolean;
  /** For training checkpoints: the top-level entry holding the weights (e.g. 'model_ema'). */
  key?: string;
  /** The model's family: its checkpoint filter maps published checkpoints onto the model's keys. */
  family?: string;
}

export interface LoadWeightsResult {
  report: LoadReport;
  format: string;
  warnings: string[];
}

/** Buffers that models recompute from their config, so checkpoints may or may not carry them. */
const RECOMPUTABLE = /(^|\.)(num_batches_tracked|relative_position_index|attn_mask)$/;

interface ConfigDifference {
  option: string;
  checkpoint: unknown;
  model: unknown;
}

/** The options whose values differ between the model's config and the one a checkpoint was saved with. */
function configDifferences(model: Record<string, unknown>, saved: Record<string, unknown>): ConfigDifference[] {
  return Object.keys(saved)
    .filter((k) => k in model && JSON.stringify(model[k]) !== JSON.stringify(saved[k]))
    .map((option) => ({ option, checkpoint: saved[option], model: model[option] }));
}

function describeDifferences(ds: readonly ConfigDifference[]): string {
  return ds.map((d) => `${d.option} ${JSON.stringify(d.checkpoint)} in the checkpoint vs ${JSON.stringify(d.model)} in the model`).join('; ');
}

/** The config a checkpoint's metadata records, if it was saved by volution. */
function savedConfig(metadata: Record<string, string>): Record<string, unknown> | undefined {
  const text = metadata[CONFIG_METADATA_KEY];
  if (text === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    return isRecord(parsed) && isRecord(parsed.config) ? parsed.config : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a checkpoint, naming the file in any error. */
async function readCheckpoint(file: string, key?: string): Promise<CheckpointFile> {
  try {
    return await loadCheckpointFile(file, key === undefined ? {} : { key });
  } catch (err) {
    if (err instanceof VolutionError) throw new (err.constructor as new (m: string) => VolutionError)(`'${file}': ${err.message}`);
    throw err;
  }
}

/** A sharded safetensors checkpoint (`*.safetensors.index.json` with a `weight_map`, the Hugging Face layout), merged. */
async function readSharded(index: string): Promise<CheckpointFile> {
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(await readFile(index, 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (err) {
    throw new FormatError(`'${index}' is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isRecord(weightMap) || !Object.values(weightMap).every((v) => typeof v === 'string')) throw new FormatError(`'${index}' has no "weight_map" of tensor names to shard files`);
  const merged: CheckpointFile = { format: 'safetensors', tensors: new Map(), metadata: {}, skipped: [] };
  for (const shard of new Set(Object.values(weightMap) as string[])) {
    const part = await readCheckpoint(join(dirname(index), shard));
    for (const [k, v] of part.tensors) merged.tensors.set(k, v);
    merged.metadata = { ...part.metadata, ...merged.metadata };
  }
  return merged;
}

/**
 * Loads a checkpoint file (also a sharded `.index.json`, or a model
 * directory's weights) into `model`: unwraps training checkpoints (`model`
 * / `state_dict`, or `key`), strips a `module.` prefix, applies the family's
 * checkpoint filter, tolerates recomputable buffers (BatchNorm step
 * counters, relative-position indices, attention masks), and loads strictly
 * unless told otherwise.
 */
export async function loadWeights(model: ClassifierModel, path: string, opts: LoadWeightsOptions = {}): Promise<LoadWeightsResult> {
  const file = existsSync(path) && statSync(path).isDirectory() ? join(path, WEIGHTS_FILE) : path;
  if (!existsSync(file)) throw new ConfigError(`no such weights file: '${file}'`);
  const ckpt = file.endsWith('.index.json') ? await readSharded(file) : await readCheckpoint(file, opts.key);
  if (opts.key !== undefined && ckpt.format !== 'torch') throw new ConfigError(`--key '${opts.key}' applies to PyTorch training checkpoints; '${file}' is ${ckpt.format}`);
  let tensors: Map<string, NDArray> = ckpt.tensors;
  const keys = [...tensors.keys()];
  if (keys.length > 0 && keys.every((k) => k.startsWith('module.'))) tensors = new Map([...tensors].map(([k, v]) => [k.slice('module.'.length), v]));
  const familyName = opts.family ?? model.family;
  const filter = familyName === undefined ? undefined : getFamily(familyName).filterCheckpoint;
  if (filter) tensors = filter(tensors, model);
  const own = new Set(model.stateDict().keys());
  for (const k of [...tensors.keys()]) if (RECOMPUTABLE.test(k) && !own.has(k)) tensors.delete(k);

  const warnings: string[] = [];
  const saved = savedConfig(ckpt.metadata);
  const differences = saved ? configDifferences(model.config as Record<string, unknown>, saved) : [];
  let report: LoadReport;
  try {
    report = model.loadStateDict(tensors, { strict: opts.strict ?? true, ignore: (k) => RECOMPUTABLE.test(k) });
  } catch (err) {
    // A config mismatch explains a shape mismatch better than the key list does.
    if (err instanceof StateDictError && differences.length) throw new StateDictError(`${err.message} The checkpoint was saved with a different config: ${describeDifferences(differences)}.`);
    throw err;
  }
  if (differences.length) {
    const fix = JSON.stringify(Object.fromEntries(differences.map((d) => [d.option, d.checkpoint])));
    warnings.push(
      `'${file}' was saved from a model with a different config: ${describeDifferences(differences)}. ` +
        'Its weights loaded, but options that change no weight shape (such as head_dim or num_heads) make the outputs silently wrong; ' +
        `build the model with the checkpoint's values (--config '${fix}')`,
    );
  }
  if (!(opts.strict ?? true)) {
    const skipped = report.missing.length + report.unexpected.length + report.mismatched.length;
    if (skipped) warnings.push(`non-strict load of '${file}': ${report.missing.length} missing, ${report.unexpected.length} unexpected and ${report.mismatched.length} mis-shaped keys were skipped`);
  }
  return { report, format: ckpt.format, warnings };
}

export interface OpenModelOptions {
  /** A variant or family name; optional when `weights` is a model directory. */
  model?: string;
  /** Config overrides (snake_case official options). */
  config?: Record<string, unknown>;
  /** A checkpoint file or a model directory; without it the model keeps its seeded initialisation. */
  weights?: string;
  strict?: boolean;
  key?: string;
  seed?: number;
}

/**
 * Resolves what the command line names into a ready model in eval mode: a
 * model directory alone, or a variant/family (+ config) with optional weights.
 */
export async function openModel(opts: OpenModelOptions): Promise<LoadedModel> {
  const isDir = opts.weights !== undefined && existsSync(opts.weights) && statSync(opts.weights).isDirectory();
  if (opts.model === undefined) {
    if (!isDir) throw new ConfigError('name the model (--model <variant or family>), or give a model directory as --weights');
    if (opts.config) throw new ConfigError('--config needs --model: a model directory carries its own config');
    return loadModel(opts.weights!);
  }
  const model = createModel(opts.model, opts.config ?? {}, { seed: opts.seed ?? 0 });
  const warnings: string[] = [];
  let pretrained = effectivePretrained(opts.model, model);
  if (opts.weights !== undefined) {
    if (isDir) pretrained = pretrainedFromJson((await readModelConfig(opts.weights)).pretrained, join(opts.weights, CONFIG_FILE));
    warnings.push(...(await loadWeights(model, opts.weights, { strict: opts.strict, key: opts.key, family: resolveConfig(opts.model).family.name })).warnings);
  }
  return { model: model.eval(), name: opts.model, pretrained, warnings };
}

export { writeFileAtomic };
