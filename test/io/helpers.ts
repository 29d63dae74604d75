/** Test helpers for the checkpoint readers: fixtures, a tiny ZIP writer and a pickle assembler. */
import { readFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { expect } from 'vitest';
import { FormatError } from '../../src/errors.js';
import type { NDArray } from '../../src/ir/ndarray.js';

export function fixturePath(name: string): string {
  return new URL(`../fixtures/io/${name}`, import.meta.url).pathname;
}

export function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(fixturePath(name)));
}

/** Concatenates byte chunks; strings are taken as latin-1 (one byte per char), which is how opcodes are spelled. */
export function cat(...parts: (Uint8Array | number[] | string)[]): Uint8Array {
  const chunks = parts.map((p) => (typeof p === 'string' ? Uint8Array.from(p, (c) => c.charCodeAt(0)) : Uint8Array.from(p)));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function le(value: number | bigint, bytes: number): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

/** Pickle assembler: each helper returns the bytes of one opcode with its argument. */
export const pk = {
  u32: (v: number | bigint): number[] => le(v, 4),
  u64: (v: number | bigint): number[] => le(v, 8),
  /** BINUNICODE */
  str: (s: string): Uint8Array => {
    const b = new TextEncoder().encode(s);
    return cat('X', le(b.length, 4), b);
  },
  /** BININT */
  int: (n: number): Uint8Array => cat('J', le(n >>> 0, 4)),
  /** GLOBAL */
  global: (module: string, name: string): string => `c${module}\n${name}\n`,
  /** SHORT_BINBYTES */
  bytes: (b: number[] | Uint8Array): Uint8Array => cat('C', [b.length], b),
  /** BINFLOAT (big-endian) */
  float: (x: number): Uint8Array => {
    const out = new Uint8Array(9);
    out[0] = 0x47;
    new DataView(out.buffer).setFloat64(1, x, false);
    return out;
  },
};

interface ZipEntryInput {
  name: string;
  data: Uint8Array;
}

/** Writes a stored-only ZIP; with `zip64`, sizes and offsets go through ZIP64 extra fields and end records, as torch does for big files. */
export function makeZip(entries: ZipEntryInput[], opts: { zip64?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const nameBytes = new TextEncoder().encode(name);
    const crc = crc32(data) >>> 0;
    const local = cat(le(0x04034b50, 4), le(20, 2), le(0, 2), le(0, 2), le(0, 4), le(crc, 4), le(data.length, 4), le(data.length, 4), le(nameBytes.length, 2), le(0, 2), nameBytes);
    const extra = opts.zip64 ? cat(le(1, 2), le(24, 2), le(data.length, 8), le(data.length, 8), le(offset, 8)) : new Uint8Array(0);
    const sat = (v: number): number => (opts.zip64 ? 0xffffffff : v);
    central.push(
      cat(
        le(0x02014b50, 4),
        le(45, 2),
        le(45, 2),
        le(0, 2),
        le(0, 2),
        le(0, 4),
        le(crc, 4),
        le(sat(data.length), 4),
        le(sat(data.length), 4),
        le(nameBytes.length, 2),
        le(extra.length, 2),
        le(0, 2),
        le(0, 2),
        le(0, 2),
        le(0, 4),
        le(sat(offset), 4),
        nameBytes,
        extra,
      ),
    );
    parts.push(local, data);
    offset += local.length + data.length;
  }
  const cd = cat(...central);
  const tail: Uint8Array[] = [];
  if (opts.zip64) {
    const at = offset + cd.length;
    tail.push(cat(le(0x06064b50, 4), le(44, 8), le(45, 2), le(45, 2), le(0, 4), le(0, 4), le(entries.length, 8), le(entries.length, 8), le(cd.length, 8), le(offset, 8)));
    tail.push(cat(le(0x07064b50, 4), le(0, 4), le(at, 8), le(1, 4)));
    tail.push(cat(le(0x06054b50, 4), le(0, 2), le(0, 2), le(0xffff, 2), le(0xffff, 2), le(0xffffffff, 4), le(0xffffffff, 4), le(0, 2)));
  } else {
    tail.push(cat(le(0x06054b50, 4), le(0, 2), le(0, 2), le(entries.length, 2), le(entries.length, 2), le(cd.length, 4), le(offset, 4), le(0, 2)));
  }
  return cat(...parts, cd, ...tail);
}

/** Runs `fn` and returns the FormatError it throws; fails the test if it returns or throws anything else. */
export function formatError(fn: () => unknown): FormatError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FormatError) return err;
    throw new Error(`expected a FormatError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected a FormatError, but the call succeeded');
}

/** Asserts bit-exact equality of two arrays (NaN and -0 included). */
export function expectSameArray(actual: NDArray | undefined, expected: NDArray | undefined, label = ''): void {
  expect(actual, label).toBeDefined();
  expect(expected, label).toBeDefined();
  expect(actual!.dtype, label).toBe(expected!.dtype);
  expect(actual!.shape, label).toEqual(expected!.shape);
  expect(actual!.size, label).toBe(expected!.size);
  for (let i = 0; i < actual!.size; i++) {
    if (!Object.is(actual!.data[i], expected!.data[i])) {
      throw new Error(`${label}: element ${i} is ${actual!.data[i]}, expected ${expected!.data[i]}`);
    }
  }
}
