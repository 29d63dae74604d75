/**
 * The model registry (timm-style): every published variant is registered by
 * name with its config and pretrained config; each family is registered too,
 * so `createModel('uniformer', {depth: [...], ...})` builds any config from
 * the official constructor's snake_case options.
 */
import { ConfigError } from '../errors.js';
import type { NDArray } from '../ir/ndarray.js';
import { Module } from '../nn/module.js';
import { CentreRng, Rng } from '../rng.js';
import type { Tensor } from '../tensor/tensor.js';

/** Evaluation preprocessing and provenance of published weights. */
export interface PretrainedConfig {
  /** [C, H, W] */
  inputSize: readonly [number, number, number];
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
  interpolation: 'bicubic' | 'bilinear';
  /** Resize the shorter side to inputSize / cropPct, then centre-crop. */
  cropPct: number;
  numClasses: number;
  /** Where the official weights are published (none for weightless variants). */
  weights?: { url: string; format: 'pth' | 'pdparams' | 'safetensors'; top1?: number; notes?: string };
  /** Published ImageNet top-1 of the paper, when the variant has one. */
  paperTop1?: number;
}

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** The DeiT-style evaluation transform most families share. */
export function imagenetPretrained(over: Partial<PretrainedConfig> = {}): PretrainedConfig {
  return { inputSize: [3, 224, 224], mean: IMAGENET_MEAN, std: IMAGENET_STD, interpolation: 'bicubic', cropPct: 0.875, numClasses: 1000, ...over };
}

/** Every classifier exposes timm's uniform methods. */
export abstract class ClassifierModel extends Module {
  abstract readonly numClasses: number;
  /** The family's config the model was built from (official snake_case names). */
  abstract readonly config: object;
  /** Backbone output, before pooling and head. */
  abstract forwardFeatures(x: Tensor): Tensor;
  /** Pooling and classifier; with preLogits, the pooled features only. */
  abstract forwardHead(x: Tensor, preLogits?: boolean): Tensor;
  /** Replaces the classifier with a freshly initialised one for `numClasses`. */
  abstract resetClassifier(numClasses: number, rng: Rng): void;
  /** The registry family that built the model (set by createModel): picks its checkpoint filter. */
  family?: string;

  forward(x: Tensor): Tensor {
    return this.forwardHead(this.forwardFeatures(x));
  }
}

export interface CreateOptions {
  /** Seed of the initialisation (default 0). */
  seed?: number;
  /**
   * false skips random initialisation (weights at the distributions' centres,
   * norms at identity): much faster for large models whose weights are
   * loaded right after, or that are only inspected.
   */
  init?: boolean;
}

export interface FamilyEntry<C extends object = object> {
  readonly name: string;
  /** Paper and official code, for `volution info`. */
  readonly description: string;
  /** Default config (the family's canonical variant) merged under user options. */
  readonly defaults: C;
  /** Builds a model from a full config. */
  build(config: C, rng: Rng): ClassifierModel;
  /**
   * Maps a published checkpoint's state dict onto `model`'s keys before
   * strict loading (drop training-only heads, resample position embeddings,
   * convert another framework's layout). Without it, keys load as they are.
   */
  filterCheckpoint?(tensors: ReadonlyMap<string, NDArray>, model: ClassifierModel): Map<string, NDArray>;
}

export interface VariantEntry {
  readonly name: string;
  readonly family: string;
  readonly config: object;
  readonly pretrained: PretrainedConfig;
  readonly description?: string;
}

const families = new Map<string, FamilyEntry>();
const variants = new Map<string, VariantEntry>();

export function registerFamily<C extends object>(f: FamilyEntry<C>): void {
  if (families.has(f.name)) throw new ConfigError(`family '${f.name}' is registered twice`);
  families.set(f.name, f as unknown as FamilyEntry);
}

export function registerVariant(v: VariantEntry): void {
  if (variants.has(v.name)) throw new ConfigError(`model '${v.name}' is registered twice`);
  if (!families.has(v.family)) throw new ConfigError(`model '${v.name}': unknown family '${v.family}'`);
  variants.set(v.name, v);
}

function globToRegex(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}

/** Registered variant names matching a glob (`uniformer*`), sorted. */
export function listModels(pattern = '*'): string[] {
  const re = globToRegex(pattern);
  return [...variants.keys()].filter((n) => re.test(n)).sort();
}

export function listFamilies(): string[] {
  return [...families.keys()].sort();
}

export function getVariant(name: string): VariantEntry {
  const v = variants.get(name);
  if (!v) throw new ConfigError(`unknown model '${name}'${suggest(name)}. List them with \`volution list\`.`);
  return v;
}

export function getFamily(name: string): FamilyEntry {
  const f = families.get(name);
  if (!f) throw new ConfigError(`unknown model family '${name}' (families: ${listFamilies().join(', ')})`);
  return f;
}

function suggest(name: string): string {
  const close = [...variants.keys(), ...families.keys()].filter((n) => n.startsWith(name.split('_')[0]!)).slice(0, 8);
  return close.length ? ` (did you mean ${close.join(', ')}?)` : '';
}

/** Resolves a variant or family name and config overrides into the family and full config. */
export function resolveConfig(name: string, overrides: object = {}): { family: FamilyEntry; config: object; variant?: VariantEntry } {
  const variant = variants.get(name);
  const family = variant ? getFamily(variant.family) : families.get(name);
  if (!family) getVariant(name);
  const base = { ...family!.defaults, ...(variant?.config ?? {}) } as Record<string, unknown>;
  for (const k of Object.keys(overrides)) {
    if (!(k in base)) throw new ConfigError(`${name}: unknown config option '${k}' (options: ${Object.keys(base).join(', ')})`);
  }
  return { family: family!, config: { ...base, ...overrides }, variant };
}

/** Builds a registered variant or a family with config overrides, parameters named by state-dict key. */
export function createModel(name: string, overrides: object = {}, opts: CreateOptions = {}): ClassifierModel {
  const { family, config } = resolveConfig(name, overrides);
  const rng = opts.init === false ? new CentreRng() : new Rng(opts.seed ?? 0);
  const model = family.build(config, rng).nameParameters();
  model.family = family.name;
  return model;
}

/** The pretrained (preprocessing) config of a variant; families get the ImageNet default at their img_size. */
export function pretrainedConfig(name: string, config?: object): PretrainedConfig {
  const v = variants.get(name);
  if (v) return v.pretrained;
  const size = (config as { img_size?: number } | undefined)?.img_size ?? 224;
  const classes = (config as { num_classes?: number } | undefined)?.num_classes ?? 1000;
  return imagenetPretrained({ inputSize: [3, size, size], numClasses: classes });
}
