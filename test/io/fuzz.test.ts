/**
 * Property-based tests: mutated or truncated files must fail with a
 * FormatError (never a RangeError, TypeError or hang), and random valid
 * tensors must round-trip through safetensors bit-exactly.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import type { DType } from '../../src/ir/ndarray.js';
import { unpickle } from '../../src/io/pickle.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { readTorchCheckpoint } from '../../src/io/torch.js';
import { openZip } from '../../src/io/zip.js';
import { expectSameArray, fixture, makeZip } from './helpers.js';

/** A parse may take at most this long, so a hang or blow-up fails the property instead of the suite. */
const MAX_PARSE_MS = 2000;

interface Mutation {
  edits: { at: number; value: number }[];
  truncateTo: number | null;
}

/** Byte edits biased towards the first `hot` bytes (headers and opcodes), plus an optional truncation. */
function mutation(length: number, hot = 512): fc.Arbitrary<Mutation> {
  const position = fc.oneof(fc.nat({ max: Math.min(length, hot) - 1 }), fc.nat({ max: length - 1 }));
  return fc.record({
    edits: fc.array(fc.record({ at: position, value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
    truncateTo: fc.option(fc.nat({ max: length }), { nil: null }),
  });
}

function apply(bytes: Uint8Array, m: Mutation): Uint8Array {
  const out = bytes.slice();
  for (const { at, value } of m.edits) out[at] = value;
  return m.truncateTo === null ? out : out.subarray(0, m.truncateTo);
}

/** Runs a parser: it may succeed or throw a FormatError, and must finish quickly. */
function onlyFormatError(parse: () => unknown): void {
  const start = performance.now();
  try {
    parse();
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
  }
  expect(performance.now() - start).toBeLessThan(MAX_PARSE_MS);
}

function fuzz(name: string, bytes: Uint8Array, parse: (b: Uint8Array) => unknown, numRuns = 400): void {
  it(`${name}: mutations and truncations only raise FormatError`, () => {
    parse(bytes); // the unmutated input is valid
    fc.assert(
      fc.property(mutation(bytes.length), (m) => onlyFormatError(() => parse(apply(bytes, m)))),
      { numRuns },
    );
  });
}

/** Reads every entry, as a loader would. */
function readAllEntries(bytes: Uint8Array): void {
  const zip = openZip(bytes);
  for (const name of zip.names()) zip.read(name);
}

describe('fuzz: safetensors', () => {
  fuzz('python-written, every dtype', fixture('torch_ckpt_expected.safetensors'), (b) => readSafetensors(b));
  fuzz('real weights file', fixture('acmix_weights.safetensors'), (b) => readSafetensors(b), 200);
  fuzz('our writer', writeSafetensors({ a: NDArray.float32([2, 2], [1, 2, 3, 4]), m: new NDArray('bool', [3], Uint8Array.from([1, 0, 1])) }, { k: 'v' }), (b) => readSafetensors(b));
});

describe('fuzz: zip', () => {
  fuzz('python zipfile, deflated', fixture('deflated.zip'), readAllEntries);
  fuzz('torch.save archive', fixture('torch_cfgnode.pth'), readAllEntries);
  fuzz('ZIP64 records', makeZip([{ name: 'a/x', data: new Uint8Array(40) }, { name: 'a/y', data: new Uint8Array(9) }], { zip64: true }), readAllEntries);
  // Mutations in the tail hit the end records and central directory.
  it('torch.save archive: mutations of the directory only raise FormatError', () => {
    const bytes = fixture('torch_ckpt.pth');
    const tail = fc.nat({ max: 1023 }).map((k) => bytes.length - 1 - k);
    const m = fc.record({ edits: fc.array(fc.record({ at: tail, value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }), truncateTo: fc.constant(null) });
    fc.assert(fc.property(m, (mm) => onlyFormatError(() => readAllEntries(apply(bytes, mm)))), { numRuns: 400 });
  });
});

describe('fuzz: pickle', () => {
  for (const p of [2, 4, 5]) fuzz(`pdparams protocol ${p}`, fixture(`pdparams_p${p}.pdparams`), (b) => unpickle(b), 500);

  // Re-zip a mutated data.pkl with valid CRCs so that the mutations reach the unpickler and tensor rebuilds.
  const zip = openZip(fixture('torch_ckpt.pth'));
  const entries = zip.names().map((name) => ({ name, data: zip.read(name) }));
  const pkl = zip.read('torch_ckpt/data.pkl');
  const withPickle = (data: Uint8Array): Uint8Array => makeZip(entries.map((e) => (e.name === 'torch_ckpt/data.pkl' ? { name: e.name, data } : e)));
  it('torch data.pkl: mutations only raise FormatError', () => {
    readTorchCheckpoint(withPickle(pkl));
    fc.assert(
      fc.property(mutation(pkl.length, pkl.length), (m) => onlyFormatError(() => readTorchCheckpoint(withPickle(apply(pkl, m))))),
      { numRuns: 500 },
    );
  });

  it('random opcode soup only raises FormatError', () => {
    const opcodes = fc.constantFrom(...'()012NKJMGXBCabcdehjlqrstu}]'.split('').map((c) => c.charCodeAt(0)), 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x8f, 0x90, 0x91, 0x93, 0x94, 0x95);
    const soup = fc.array(fc.oneof(opcodes, fc.integer({ min: 0, max: 255 })), { maxLength: 200 });
    fc.assert(
      fc.property(fc.constantFrom(2, 4, 5), soup, (protocol, body) => onlyFormatError(() => unpickle(Uint8Array.from([0x80, protocol, ...body, 0x2e])))),
      { numRuns: 1000 },
    );
  });
});

describe('property: safetensors round trip', () => {
  const dims = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 });
  const tensor: fc.Arbitrary<NDArray> = fc.constantFrom<DType>('float32', 'float64', 'int64', 'bool').chain((dtype) =>
    dims.chain((shape): fc.Arbitrary<NDArray> => {
      const n = shape.reduce((a, b) => a * b, 1);
      switch (dtype) {
        case 'float32':
          return fc.array(fc.float(), { minLength: n, maxLength: n }).map((v) => new NDArray('float32', shape, Float32Array.from(v)));
        case 'float64':
          return fc.array(fc.double(), { minLength: n, maxLength: n }).map((v) => new NDArray('float64', shape, Float64Array.from(v)));
        case 'int64':
          return fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { minLength: n, maxLength: n }).map((v) => new NDArray('int64', shape, BigInt64Array.from(v)));
        default:
          return fc.array(fc.boolean(), { minLength: n, maxLength: n }).map((v) => new NDArray('bool', shape, Uint8Array.from(v, Number)));
      }
    }),
  );
  const name = fc.string({ maxLength: 12 }).filter((s) => s !== '__metadata__');

  it('random tensors and metadata round-trip bit-exactly', () => {
    fc.assert(
      fc.property(fc.dictionary(name, tensor, { maxKeys: 5 }), fc.option(fc.dictionary(fc.string(), fc.string()), { nil: undefined }), (tensors, metadata) => {
        const map = new Map(Object.entries(tensors));
        const back = readSafetensors(writeSafetensors(map, metadata), { keepFloat64: true });
        expect(back.metadata).toEqual(metadata ?? {});
        expect(back.tensors.size).toBe(map.size);
        for (const [k, t] of map) expectSameArray(back.tensors.get(k), t, k);
      }),
      { numRuns: 300 },
    );
  });
});
