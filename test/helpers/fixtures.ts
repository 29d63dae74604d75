/**
 * Loads a parity case from test/fixtures/<case>/ (copied from the official
 * PyTorch fixtures; large weight files are sharded with a
 * `weights.safetensors.index.json`, the Hugging Face convention).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NDArray } from '../../src/ir/ndarray.js';
import { readSafetensors } from '../../src/io/safetensors.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

export interface Manifest {
  case: string;
  family: string;
  variant: string;
  kwargs: Record<string, unknown>;
  img_size: number;
  batch: number;
  num_classes: number;
  params: number;
  grads?: { tensors: { name: string; dtype: string; shape: number[]; absmax?: number; fp64_abs?: number }[]; zero_exact?: { keys: string[] } | null; all_zero?: { keys: string[] } | null };
  [k: string]: unknown;
}

export interface FixtureCase {
  manifest: Manifest;
  weights: Map<string, NDArray>;
  io: Map<string, NDArray>;
  activations: Map<string, NDArray>;
  grads?: Map<string, NDArray>;
}

function readFile(dir: string, name: string, keepFloat64 = false): Map<string, NDArray> {
  const path = join(dir, name);
  if (existsSync(path)) return readSafetensors(readFileSync(path), { keepFloat64 }).tensors;
  const index = `${path}.index.json`;
  const { weight_map } = JSON.parse(readFileSync(index, 'utf8')) as { weight_map: Record<string, string> };
  const out = new Map<string, NDArray>();
  for (const shard of new Set(Object.values(weight_map))) {
    for (const [k, v] of readSafetensors(readFileSync(join(dir, shard)), { keepFloat64 }).tensors) out.set(k, v);
  }
  return out;
}

export function loadFixture(name: string): FixtureCase {
  const dir = join(FIXTURES, name);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
  return {
    manifest,
    weights: readFile(dir, 'weights.safetensors'),
    io: readFile(dir, 'io.safetensors', true),
    activations: readFile(dir, 'activations.safetensors'),
    grads: existsSync(join(dir, 'grads.safetensors')) ? readFile(dir, 'grads.safetensors') : undefined,
  };
}

/** The fixture's activation, following `activation_aliases` (e.g. `blocks1.0:in.0` → `patch_embed1:out`). */
export function activation(c: FixtureCase, key: string): NDArray | undefined {
  const direct = c.activations.get(key);
  if (direct) return direct;
  const alias = (c.manifest.activation_aliases as Record<string, { same_as: string; file?: string }> | undefined)?.[key];
  if (!alias) return undefined;
  return alias.file === 'io.safetensors' ? c.io.get(alias.same_as) : activation(c, alias.same_as);
}
