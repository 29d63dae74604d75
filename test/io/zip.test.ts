import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.js';
import { openZip } from '../../src/io/zip.js';
import { fixture, formatError, makeZip } from './helpers.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

/** Offset of the last occurrence of a 4-byte little-endian signature. */
function lastSig(bytes: Uint8Array, sig: number): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let at = bytes.length - 4; at >= 0; at--) if (dv.getUint32(at, true) === sig) return at;
  throw new Error('signature not found');
}

function patched(bytes: Uint8Array, at: number, value: number, size: 2 | 4): Uint8Array {
  const out = bytes.slice();
  const dv = new DataView(out.buffer);
  if (size === 2) dv.setUint16(at, value, true);
  else dv.setUint32(at, value, true);
  return out;
}

describe('openZip', () => {
  it('reads stored and deflated entries written by Python zipfile', () => {
    const zip = openZip(fixture('deflated.zip'));
    expect(zip.names()).toEqual(['a.txt', 'dir/b.bin']);
    expect(dec(zip.read('a.txt'))).toBe('hello zip '.repeat(100));
    expect([...zip.read('dir/b.bin')]).toEqual(Array.from({ length: 256 }, (_, i) => i));
    expect(formatError(() => zip.read('nope')).message).toMatch(/no entry named 'nope'/);
  });

  it('reads a torch.save archive (ZIP64 end records)', () => {
    const zip = openZip(fixture('torch_ckpt.pth'));
    expect(zip.names()).toContain('torch_ckpt/data.pkl');
    expect(dec(zip.read('torch_ckpt/version')).trim()).toBe('3');
  });

  it('reads ZIP64 extra fields with saturated 32-bit sizes and offsets', () => {
    const bytes = makeZip([{ name: 'x/a', data: enc('alpha') }, { name: 'x/b', data: enc('beta') }], { zip64: true });
    const zip = openZip(bytes);
    expect(zip.names()).toEqual(['x/a', 'x/b']);
    expect(dec(zip.read('x/b'))).toBe('beta');
  });

  it('refuses a deflate entry that inflates past its declared size (zip bomb)', () => {
    const zip = openZip(fixture('bomb_small_declared.zip'));
    expect(formatError(() => zip.read('bomb.bin')).message).toMatch(/does not inflate to its declared 1000 bytes.*zip bomb/);
  });

  it('refuses a deflate entry declaring an impossible size before inflating', () => {
    const zip = openZip(fixture('bomb_huge_declared.zip'));
    expect(formatError(() => zip.read('bomb.bin')).message).toMatch(/over the 1073741824-byte limit/);
    const capped = openZip(fixture('bomb_huge_declared.zip'), { maxInflatedBytes: 2 ** 40 });
    expect(formatError(() => capped.read('bomb.bin')).message).toMatch(/a ratio deflate cannot reach/);
  });

  it('refuses encrypted entries', () => {
    const bytes = fixture('deflated.zip');
    const cd = lastSig(bytes, 0x02014b50); // central header of the last entry
    expect(formatError(() => openZip(patched(bytes, cd + 8, 1, 2))).message).toMatch(/encrypted/);
  });

  it('refuses unsupported compression methods', () => {
    const bytes = fixture('deflated.zip');
    const cd = lastSig(bytes, 0x02014b50);
    expect(formatError(() => openZip(patched(bytes, cd + 10, 12, 2))).message).toMatch(/compression method 12/);
  });

  it('detects corrupted data through the CRC', () => {
    const bytes = makeZip([{ name: 'a', data: enc('payload') }]).slice();
    bytes[31] ^= 0xff; // first data byte (30-byte header + 1-byte name)
    expect(formatError(() => openZip(bytes).read('a')).message).toMatch(/CRC-32/);
  });

  it('refuses an absurd entry count', () => {
    const bytes = makeZip([{ name: 'a', data: enc('x') }]);
    const eocd = lastSig(bytes, 0x06054b50);
    const lying = patched(patched(bytes, eocd + 8, 0xfffe, 2), eocd + 10, 0xfffe, 2);
    expect(formatError(() => openZip(lying)).message).toMatch(/declares 65534 entries, more than its/);
  });

  it('refuses sizes and offsets past the end', () => {
    const bytes = makeZip([{ name: 'a', data: enc('xyz') }]);
    const cd = lastSig(bytes, 0x02014b50);
    const eocd = lastSig(bytes, 0x06054b50);
    expect(formatError(() => openZip(patched(bytes, eocd + 16, 0x7fffffff, 4))).message).toMatch(/central directory/);
    const big = patched(patched(bytes, cd + 20, 1000, 4), cd + 24, 1000, 4);
    expect(formatError(() => openZip(big)).message).toMatch(/runs into the central directory or past the end/);
    expect(formatError(() => openZip(patched(bytes, cd + 42, 999_999, 4))).message).toMatch(/runs past the end|missing/);
  });

  it('refuses a stored entry whose sizes disagree', () => {
    const bytes = makeZip([{ name: 'a', data: enc('xyz') }]);
    const cd = lastSig(bytes, 0x02014b50);
    expect(formatError(() => openZip(patched(bytes, cd + 24, 2, 4))).message).toMatch(/declares 3 bytes stored but 2 uncompressed/);
  });

  it('refuses duplicate names and overlapping entries', () => {
    expect(formatError(() => openZip(makeZip([{ name: 'a', data: enc('1') }, { name: 'a', data: enc('2') }]))).message).toMatch(/appears twice/);
    const bytes = makeZip([{ name: 'a', data: enc('1') }, { name: 'b', data: enc('2') }]);
    const cdA = lastSig(bytes, 0x02014b50) - 47; // the first central header (46 bytes + 1-byte name)
    const overlapping = patched(patched(bytes, cdA + 20, 10, 4), cdA + 24, 10, 4);
    expect(formatError(() => openZip(overlapping)).message).toMatch(/overlap/);
  });

  it('refuses a ZIP64 end record that is missing', () => {
    const bytes = makeZip([{ name: 'a', data: enc('x') }], { zip64: true });
    const locator = lastSig(bytes, 0x07064b50);
    expect(formatError(() => openZip(patched(bytes, locator, 0, 4))).message).toMatch(/ZIP64 record that is missing/);
  });

  it('refuses non-zip input and every truncation', () => {
    expect(formatError(() => openZip(enc('definitely not a zip archive'))).message).toMatch(/not a ZIP archive/);
    expect(formatError(() => openZip(new Uint8Array(3))).message).toMatch(/too short/);
    const bytes = fixture('deflated.zip');
    for (let n = 0; n < bytes.length; n++) {
      expect(() => {
        const zip = openZip(bytes.subarray(0, n));
        for (const name of zip.names()) zip.read(name);
      }).toThrow(FormatError);
    }
  });
});
