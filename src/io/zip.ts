/**
 * A minimal, defensive ZIP reader for `torch.save` archives. torch writes
 * stored (method 0) entries with ZIP64 end records; deflated entries (method
 * 8) are also read, with the output capped at the declared size so that a zip
 * bomb fails instead of exhausting memory. Every offset and size is checked
 * against the buffer; entries may not overlap; CRC-32 is verified on read.
 */
import { crc32, inflateRawSync } from 'node:zlib';
import { FormatError } from '../errors.js';

export interface ZipArchive {
  /** Entry names in central-directory order. */
  names(): string[];
  /**
   * The uncompressed bytes of an entry. Stored entries are views into the
   * archive buffer (no copy): treat them as read-only.
   */
  read(name: string): Uint8Array;
}

export interface ZipOptions {
  /** Largest uncompressed size accepted for a deflated entry (default 1 GiB). */
  maxInflatedBytes?: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
/** Deflate cannot compress better than about 1032:1; a larger declared ratio is a lie. */
const MAX_DEFLATE_RATIO = 1032;
const DEFAULT_MAX_INFLATED = 1 << 30;

interface Entry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  uncompressedSize: number;
  localOffset: number;
  dataStart: number;
}

function fail(what: string): never {
  throw new FormatError(`zip: ${what}`);
}

/** Bounds-checked little-endian reads over the archive. */
class Reader {
  private readonly dv: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  private check(at: number, n: number, what: string): void {
    if (at < 0 || at + n > this.bytes.length) fail(`${what} at byte ${at} runs past the end of the ${this.bytes.length}-byte archive; it is truncated or corrupt`);
  }
  u16(at: number, what: string): number {
    this.check(at, 2, what);
    return this.dv.getUint16(at, true);
  }
  u32(at: number, what: string): number {
    this.check(at, 4, what);
    return this.dv.getUint32(at, true);
  }
  /** A u64 size or offset; anything beyond 2^53 cannot fit in memory and is refused. */
  u64(at: number, what: string): number {
    this.check(at, 8, what);
    const v = this.dv.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} declares ${v}, which cannot fit in memory; the archive is corrupt`);
    return Number(v);
  }
  slice(at: number, n: number, what: string): Uint8Array {
    this.check(at, n, what);
    return this.bytes.subarray(at, at + n);
  }
}

function findEocd(r: Reader): number {
  const len = r.bytes.length;
  // The EOCD is the last record; only a comment (≤ 65535 bytes) may follow it.
  for (let at = len - EOCD_SIZE; at >= Math.max(0, len - EOCD_SIZE - 0xffff); at--) {
    if (r.u32(at, 'end record') === SIG_EOCD && at + EOCD_SIZE + r.u16(at + 20, 'comment length') === len) return at;
  }
  fail('no end-of-central-directory record: this is not a ZIP archive, or it is truncated');
}

interface Directory {
  count: number;
  offset: number;
  size: number;
  /** Where the trailing records start: the central directory must end before. */
  limit: number;
}

function readDirectory(r: Reader, eocd: number): Directory {
  const disk = r.u16(eocd + 4, 'end record');
  const cdDisk = r.u16(eocd + 6, 'end record');
  const onDisk = r.u16(eocd + 8, 'end record');
  const count = r.u16(eocd + 10, 'end record');
  const size = r.u32(eocd + 12, 'end record');
  const offset = r.u32(eocd + 16, 'end record');
  const locator = eocd - 20;
  if (locator >= 0 && r.u32(locator, 'ZIP64 locator') === SIG_ZIP64_LOCATOR) {
    const at = r.u64(locator + 8, 'ZIP64 end record offset');
    if (r.u32(locator + 4, 'ZIP64 locator') !== 0 || r.u32(locator + 16, 'ZIP64 locator') > 1) fail('multi-disk archives are not supported');
    if (at + 56 > locator || r.u32(at, 'ZIP64 end record') !== SIG_ZIP64_EOCD) fail('the ZIP64 end record is missing or misplaced; the archive is corrupt');
    if (r.u32(at + 16, 'ZIP64 end record') !== 0 || r.u32(at + 20, 'ZIP64 end record') !== 0) fail('multi-disk archives are not supported');
    const onDisk64 = r.u64(at + 24, 'ZIP64 entry count');
    const count64 = r.u64(at + 32, 'ZIP64 entry count');
    if (onDisk64 !== count64) fail('multi-disk archives are not supported');
    return { count: count64, size: r.u64(at + 40, 'ZIP64 directory size'), offset: r.u64(at + 48, 'ZIP64 directory offset'), limit: at };
  }
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) fail('the end record defers to a ZIP64 record that is missing; the archive is truncated or corrupt');
  if (disk !== 0 || cdDisk !== 0 || onDisk !== count) fail('multi-disk archives are not supported');
  return { count, size, offset, limit: eocd };
}

/** Replaces saturated 32-bit fields with their values from the ZIP64 extra field (id 1), in the order the spec fixes. */
function applyZip64(r: Reader, extraStart: number, extraLength: number, e: Entry, diskField: number): void {
  const needUncompressed = e.uncompressedSize === 0xffffffff;
  const needCompressed = e.compressedSize === 0xffffffff;
  const needOffset = e.localOffset === 0xffffffff;
  if (!needUncompressed && !needCompressed && !needOffset && diskField !== 0xffff) return;
  const end = extraStart + extraLength;
  for (let at = extraStart; at + 4 <= end; ) {
    const id = r.u16(at, 'extra field');
    const len = r.u16(at + 2, 'extra field');
    if (at + 4 + len > end) break;
    if (id === 1) {
      let p = at + 4;
      const take = (): number => {
        if (p + 8 > at + 4 + len) fail(`entry '${e.name}': the ZIP64 extra field is too short`);
        const v = r.u64(p, `entry '${e.name}' ZIP64 field`);
        p += 8;
        return v;
      };
      if (needUncompressed) e.uncompressedSize = take();
      if (needCompressed) e.compressedSize = take();
      if (needOffset) e.localOffset = take();
      if (diskField === 0xffff && (p + 4 > at + 4 + len || r.u32(p, 'ZIP64 disk') !== 0)) fail('multi-disk archives are not supported');
      return;
    }
    at += 4 + len;
  }
  fail(`entry '${e.name}' has saturated 32-bit sizes but no ZIP64 extra field; the archive is corrupt`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(raw: Uint8Array): string {
  try {
    return utf8.decode(raw);
  } catch (cause) {
    throw new FormatError('zip: an entry name is not valid UTF-8; the archive is corrupt', { cause });
  }
}

function readEntries(r: Reader, dir: Directory): Entry[] {
  if (dir.offset + dir.size > dir.limit) fail(`the central directory (${dir.size} bytes at ${dir.offset}) overlaps the end records; the archive is corrupt`);
  if (dir.count * CENTRAL_SIZE > dir.size) fail(`the archive declares ${dir.count} entries, more than its ${dir.size}-byte central directory can hold; it is corrupt`);
  const entries: Entry[] = [];
  const names = new Set<string>();
  const cdEnd = dir.offset + dir.size;
  let at = dir.offset;
  for (let i = 0; i < dir.count; i++) {
    if (at + CENTRAL_SIZE > cdEnd || r.u32(at, 'central header') !== SIG_CENTRAL) fail(`central directory entry ${i} is missing or damaged; the archive is corrupt`);
    const flags = r.u16(at + 8, 'central header');
    const nameLength = r.u16(at + 28, 'central header');
    const extraLength = r.u16(at + 30, 'central header');
    const commentLength = r.u16(at + 32, 'central header');
    const next = at + CENTRAL_SIZE + nameLength + extraLength + commentLength;
    if (next > cdEnd) fail(`central directory entry ${i} runs past the directory; the archive is corrupt`);
    const name = decodeName(r.slice(at + CENTRAL_SIZE, nameLength, 'entry name'));
    if (flags & 0x41) fail(`entry '${name}' is encrypted; encrypted archives are not supported`);
    if (names.has(name)) fail(`entry '${name}' appears twice; the archive is corrupt or crafted`);
    names.add(name);
    const e: Entry = {
      name,
      method: r.u16(at + 10, 'central header'),
      crc: r.u32(at + 16, 'central header'),
      compressedSize: r.u32(at + 20, 'central header'),
      uncompressedSize: r.u32(at + 24, 'central header'),
      localOffset: r.u32(at + 42, 'central header'),
      dataStart: 0,
    };
    applyZip64(r, at + CENTRAL_SIZE + nameLength, extraLength, e, r.u16(at + 34, 'central header'));
    if (e.method !== 0 && e.method !== 8) fail(`entry '${name}' uses compression method ${e.method}; only stored (0) and deflate (8) are supported`);
    if (e.method === 0 && e.compressedSize !== e.uncompressedSize) fail(`stored entry '${name}' declares ${e.compressedSize} bytes stored but ${e.uncompressedSize} uncompressed; the archive is corrupt`);
    entries.push(e);
    at = next;
  }
  if (at !== cdEnd) fail(`the central directory holds ${cdEnd - at} bytes beyond its ${dir.count} declared entries; the archive is corrupt`);
  return entries;
}

/** Checks each local header against its central entry and that entries lie before the directory without overlapping. */
function locateData(r: Reader, entries: Entry[], cdOffset: number): void {
  for (const e of entries) {
    if (r.u32(e.localOffset, `local header of '${e.name}'`) !== SIG_LOCAL) fail(`the local header of '${e.name}' is missing at byte ${e.localOffset}; the archive is corrupt`);
    const nameLength = r.u16(e.localOffset + 26, 'local header');
    const extraLength = r.u16(e.localOffset + 28, 'local header');
    const localName = r.slice(e.localOffset + LOCAL_SIZE, nameLength, 'local name');
    if (decodeName(localName) !== e.name) fail(`the local header of '${e.name}' names a different entry; the archive is corrupt or crafted`);
    if (r.u16(e.localOffset + 8, 'local header') !== e.method) fail(`the local and central headers of '${e.name}' disagree on the compression method`);
    e.dataStart = e.localOffset + LOCAL_SIZE + nameLength + extraLength;
    if (e.dataStart + e.compressedSize > cdOffset) fail(`the data of '${e.name}' (${e.compressedSize} bytes at ${e.dataStart}) runs into the central directory or past the end; the archive is truncated or corrupt`);
  }
  const sorted = [...entries].sort((a, b) => a.localOffset - b.localOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (prev.dataStart + prev.compressedSize > sorted[i]!.localOffset) fail(`entries '${prev.name}' and '${sorted[i]!.name}' overlap; the archive is corrupt or crafted (overlapping entries are a zip-bomb technique)`);
  }
}

/** Parses the directory of a ZIP archive held in memory. Entries are decompressed and CRC-checked on `read`. */
export function openZip(bytes: Uint8Array, opts: ZipOptions = {}): ZipArchive {
  const maxInflated = opts.maxInflatedBytes ?? DEFAULT_MAX_INFLATED;
  const r = new Reader(bytes);
  if (bytes.length < EOCD_SIZE) fail(`the file is ${bytes.length} bytes long, too short for a ZIP archive`);
  const dir = readDirectory(r, findEocd(r));
  const entries = readEntries(r, dir);
  locateData(r, entries, dir.offset);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const verified = new Map<string, Uint8Array>();

  const inflate = (e: Entry, raw: Uint8Array): Uint8Array => {
    if (e.uncompressedSize > maxInflated) fail(`entry '${e.name}' declares ${e.uncompressedSize} uncompressed bytes, over the ${maxInflated}-byte limit; refusing a possible zip bomb`);
    if (e.uncompressedSize > e.compressedSize * MAX_DEFLATE_RATIO + 64) {
      fail(`entry '${e.name}' declares ${e.uncompressedSize} bytes from ${e.compressedSize} compressed, a ratio deflate cannot reach; the archive is corrupt or a zip bomb`);
    }
    let out: Uint8Array;
    try {
      // The cap makes zlib stop as soon as the output exceeds the declared size.
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.uncompressedSize) });
    } catch (cause) {
      throw new FormatError(`zip: entry '${e.name}' does not inflate to its declared ${e.uncompressedSize} bytes (${(cause as Error).message}); the archive is corrupt or a zip bomb`, { cause });
    }
    if (out.length !== e.uncompressedSize) fail(`entry '${e.name}' inflates to ${out.length} bytes but declares ${e.uncompressedSize}; the archive is corrupt`);
    return out;
  };

  return {
    names: () => entries.map((e) => e.name),
    read(name: string): Uint8Array {
      const cached = verified.get(name);
      if (cached) return cached;
      const e = byName.get(name);
      if (!e) fail(`no entry named '${name}'`);
      const raw = r.slice(e.dataStart, e.compressedSize, `data of '${e.name}'`);
      const data = e.method === 0 ? raw : inflate(e, raw);
      if (crc32(data) >>> 0 !== e.crc) fail(`entry '${name}' fails its CRC-32 check; the archive is corrupt`);
      verified.set(name, data);
      return data;
    },
  };
}
