/**
 * safetensors reader and writer. Layout: an 8-byte little-endian header
 * length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]},
 * "__metadata__": {string: string}}` (space-padded), then raw little-endian
 * C-order data; offsets are relative to the start of the data and the tensors
 * must tile it exactly. Every size is checked before anything is allocated.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { FormatError, fmtShape } from '../errors.js';
import { NDArray, numel } from '../ir/ndarray.js';
import type { DType } from '../ir/ndarray.js';
import { HOST_LITTLE_ENDIAN, ITEM_SIZE, decodeElements, irDType } from './elements.js';
import type { DecodeOptions, ElementType } from './elements.js';

/** safetensors dtype names this reader accepts, and the element type each one stores (a Map: no prototype lookups). */
const ELEMENT_OF: ReadonlyMap<string, ElementType> = new Map(
  Object.entries({
    F64: 'float64',
    F32: 'float32',
    F16: 'float16',
    BF16: 'bfloat16',
    I64: 'int64',
    I32: 'int32',
    I16: 'int16',
    I8: 'int8',
    U32: 'uint32',
    U16: 'uint16',
    U8: 'uint8',
    BOOL: 'bool',
  } satisfies Record<string, ElementType>),
);

const TAG_OF: Readonly<Record<DType, string>> = { float32: 'F32', float64: 'F64', int64: 'I64', bool: 'BOOL' };

/** Same limit as the reference implementation: a larger header is refused before it is read. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

export interface Safetensors {
  /** Tensors in file (data-offset) order. */
  tensors: Map<string, NDArray>;
  /** The `__metadata__` string map ({} when absent). */
  metadata: Record<string, string>;
}

export type ReadSafetensorsOptions = DecodeOptions;

function fail(what: string): never {
  throw new FormatError(`safetensors: ${what}`);
}

/** Names of the top-level object's keys in source order, duplicates included (JSON.parse keeps only the last). */
function topLevelKeys(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 0x22) {
      const start = i++;
      // The text already parsed as JSON, so every string is terminated.
      while (json.charCodeAt(i) !== 0x22) i += json.charCodeAt(i) === 0x5c ? 2 : 1;
      if (depth === 1) {
        let j = i + 1;
        while (json.charCodeAt(j) === 0x20 || json.charCodeAt(j) === 0x0a || json.charCodeAt(j) === 0x0d || json.charCodeAt(j) === 0x09) j++;
        if (json.charCodeAt(j) === 0x3a) keys.push(JSON.parse(json.slice(start, i + 1)) as string);
      }
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return keys;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

interface Entry {
  name: string;
  elem: ElementType;
  shape: number[];
  begin: number;
  end: number;
}

function parseEntry(name: string, info: unknown, dataLength: number): Entry {
  const where = `tensor '${name}'`;
  if (!isRecord(info)) fail(`${where}: the header entry is not an object; the file is corrupt`);
  const { dtype, shape, data_offsets: offsets } = info;
  if (typeof dtype !== 'string') fail(`${where}: missing or non-string "dtype"`);
  const elem = ELEMENT_OF.get(dtype);
  if (elem === undefined) {
    fail(`${where}: unsupported dtype '${dtype}' (supported: ${[...ELEMENT_OF.keys()].join(', ')}); convert the tensor to one of these before saving`);
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) fail(`${where}: "shape" must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !isIndex(offsets[0]) || !isIndex(offsets[1]) || offsets[0] > offsets[1]) {
    fail(`${where}: "data_offsets" must be [begin, end] with 0 ≤ begin ≤ end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) fail(`${where}: data_offsets [${begin}, ${end}] run past the end of the ${dataLength}-byte data section; the file is truncated or corrupt`);
  const expected = numel(shape) * ITEM_SIZE[elem];
  if (expected !== end - begin) {
    fail(`${where}: shape ${fmtShape(shape)} of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}; the header is corrupt`);
  }
  return { name, elem, shape, begin, end };
}

/** Parses a safetensors buffer. Throws `FormatError` saying what is wrong for any malformed input. */
export function readSafetensors(bytes: Uint8Array, opts: ReadSafetensorsOptions = {}): Safetensors {
  if (bytes.length < 8) fail(`the file is ${bytes.length} bytes long, shorter than the 8-byte header length; it is truncated or not a safetensors file`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) fail(`the declared header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not a safetensors file`);
  const n = Number(headerLength);
  if (8 + n > bytes.length) fail(`the declared header length ${n} runs past the end of the ${bytes.length}-byte file; the file is truncated`);
  let text: string;
  let header: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
    header = JSON.parse(text);
  } catch (cause) {
    throw new FormatError(`safetensors: the header is not valid UTF-8 JSON (${(cause as Error).message}); the file is corrupt or not a safetensors file`, { cause });
  }
  if (!isRecord(header)) fail('the header must be a JSON object');
  const seen = new Set<string>();
  for (const key of topLevelKeys(text)) {
    if (seen.has(key)) fail(`the header lists '${key}' twice; the file is corrupt`);
    seen.add(key);
  }

  const metadata: Record<string, string> = {};
  const rawMetadata = header[METADATA_KEY];
  if (rawMetadata !== undefined && rawMetadata !== null) {
    if (!isRecord(rawMetadata) || !Object.values(rawMetadata).every((v) => typeof v === 'string')) fail(`"${METADATA_KEY}" must map strings to strings`);
    // defineProperty so that a key named "__proto__" stays an ordinary entry.
    for (const [k, v] of Object.entries(rawMetadata)) Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
  }

  const dataStart = 8 + n;
  const dataLength = bytes.length - dataStart;
  const entries = Object.entries(header)
    .filter(([name]) => name !== METADATA_KEY)
    .map(([name, info]) => parseEntry(name, info, dataLength))
    .sort((a, b) => a.begin - b.begin || a.end - b.end);
  // The tensors must tile the data section exactly: no gaps, no overlaps, no trailing bytes.
  let cursor = 0;
  let previous = '';
  for (const e of entries) {
    if (e.begin !== cursor) {
      fail(
        e.begin < cursor
          ? `tensor '${e.name}' overlaps '${previous}' (it starts at byte ${e.begin}, before ${cursor}); the file is corrupt`
          : `there is a gap of ${e.begin - cursor} bytes before tensor '${e.name}'; the file is corrupt`,
      );
    }
    cursor = e.end;
    previous = e.name;
  }
  if (cursor !== dataLength) fail(`the tensors cover ${cursor} bytes but the data section has ${dataLength}; the file is corrupt or has trailing bytes`);

  const tensors = new Map<string, NDArray>();
  for (const e of entries) {
    const data = decodeElements(bytes, dataStart + e.begin, numel(e.shape), e.elem, true, opts);
    tensors.set(e.name, new NDArray(irDType(e.elem, opts), e.shape, data));
  }
  return { tensors, metadata };
}

function encodeData(t: NDArray): Uint8Array {
  const d = t.data;
  // Bools are normalised to 0/1 below; the other dtypes are stored as-is, so a host-order copy is the file layout.
  if (HOST_LITTLE_ENDIAN && !(d instanceof Uint8Array)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  const out = new Uint8Array(t.size * (t.dtype === 'bool' ? 1 : t.dtype === 'float32' ? 4 : 8));
  const dv = new DataView(out.buffer);
  if (d instanceof Float32Array) for (let i = 0; i < d.length; i++) dv.setFloat32(i * 4, d[i]!, true);
  else if (d instanceof Float64Array) for (let i = 0; i < d.length; i++) dv.setFloat64(i * 8, d[i]!, true);
  else if (d instanceof BigInt64Array) for (let i = 0; i < d.length; i++) dv.setBigInt64(i * 8, d[i]!, true);
  else for (let i = 0; i < d.length; i++) out[i] = d[i] ? 1 : 0;
  return out;
}

/**
 * Serialises tensors (sorted by name) and optional string metadata into a
 * safetensors buffer. float32/float64/int64/bool are stored as F32/F64/I64/BOOL.
 */
export function writeSafetensors(tensors: Map<string, NDArray> | Record<string, NDArray>, metadata?: Record<string, string>): Uint8Array {
  const pairs = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const fields: string[] = [];
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new FormatError(`safetensors: metadata '${k}' must be a string, got ${typeof v}; stringify it before saving`);
    }
    fields.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of pairs) {
    if (name === METADATA_KEY) throw new FormatError(`safetensors: '${METADATA_KEY}' is reserved and cannot name a tensor; rename it`);
    const blob = encodeData(t);
    fields.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: TAG_OF[t.dtype], shape: t.shape, data_offsets: [offset, offset + blob.length] })}`);
    blobs.push(blob);
    offset += blob.length;
  }
  const json = new TextEncoder().encode(`{${fields.join(',')}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let at = 8 + headerLength;
  for (const blob of blobs) {
    out.set(blob, at);
    at += blob.length;
  }
  return out;
}

/** Reads and parses a safetensors file. */
export async function loadSafetensorsFile(path: string, opts: ReadSafetensorsOptions = {}): Promise<Safetensors> {
  const buf = await readFile(path);
  // A plain Uint8Array view, so that nothing downstream sees Buffer's different slice semantics.
  return readSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), opts);
}

/**
 * Writes a safetensors file atomically: the bytes go to `<path>.tmp-<pid>`,
 * are flushed to disk, and the file is renamed over `path`, so a crash never
 * leaves a half-written checkpoint under the final name.
 */
export async function saveSafetensorsFile(path: string, tensors: Map<string, NDArray> | Record<string, NDArray>, metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, writeSafetensors(tensors, metadata));
}

/** Writes a file atomically: a temp file, flushed to disk, then renamed over `path`; the temp file is removed on failure. */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
