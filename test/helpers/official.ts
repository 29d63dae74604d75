/**
 * The official code's record of every full-size variant (test/fixtures/variants.json
 * and keys/<variant>.txt), and the check that a registered variant matches it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { createModel } from '../../src/models/index.js';
import type { Module } from '../../src/nn/module.js';
import { FIXTURES } from './fixtures.js';

export interface OfficialVariant {
  variant: string;
  /** Sum of parameter elements. */
  params: number;
  /** Multiply-accumulates of convolutions and matrix products at 224×224, batch 1. */
  macs_224: number;
}

export const OFFICIAL_VARIANTS: ReadonlyMap<string, OfficialVariant> = new Map(
  (JSON.parse(readFileSync(join(FIXTURES, 'variants.json'), 'utf8')) as { variants: OfficialVariant[] }).variants.map((v) => [v.variant, v]),
);

const DTYPE_NAMES: Readonly<Record<string, string>> = { float32: 'F32', int64: 'I64' };

/** The state dict as `keys/<variant>.txt` writes it: `<key> <dtype> [<shape>]`, in order. */
export function stateDictLines(model: Module): string[] {
  return model.namedTensors().map(([k, p]) => `${k} ${DTYPE_NAMES[p.data.dtype]} [${p.data.shape.join(',')}]`);
}

/** Builds `name` (no random init) and checks its state-dict keys, dtypes, shapes and parameter count against the official code's. */
export function expectOfficialLayout(name: string): void {
  const model = createModel(name, {}, { init: false });
  expect(stateDictLines(model)).toEqual(readFileSync(join(FIXTURES, 'keys', `${name}.txt`), 'utf8').trim().split('\n'));
  expect(model.numParams()).toBe(OFFICIAL_VARIANTS.get(name)!.params);
}
