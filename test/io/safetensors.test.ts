import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { loadSafetensorsFile, readSafetensors, saveSafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';
import { tempDir } from '../helpers/tmp.js';
import { cat, expectSameArray, fixture, formatError, pk } from './helpers.js';

/** A raw safetensors buffer from header JSON text and data bytes (no validation: for malformed cases). */
function raw(headerJson: string, data: Uint8Array | number[] = []): Uint8Array {
  const json = new TextEncoder().encode(headerJson);
  return cat(pk.u64(json.length), json, data);
}

function headerOf(bytes: Uint8Array): { length: number; json: Record<string, unknown> } {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { length, json: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length))) as Record<string, unknown> };
}

describe('safetensors round trip', () => {
  it('round-trips every IR dtype, metadata, scalars and empty tensors', () => {
    const tensors = new Map<string, NDArray>([
      ['f32', NDArray.float32([2, 2], [1.5, -0, NaN, Infinity])],
      ['f64', NDArray.float64([3], [Math.PI, -1e300, 5e-324])],
      ['i64', new NDArray('int64', [3], BigInt64Array.from([-(2n ** 63n), 0n, 2n ** 63n - 1n]))],
      ['mask', new NDArray('bool', [2, 1], Uint8Array.from([1, 0]))],
      ['scalar', NDArray.float32([], [7])],
      ['empty', NDArray.float32([0, 4])],
    ]);
    const bytes = writeSafetensors(tensors, { format: 'pt', note: 'ünïcode' });
    const back = readSafetensors(bytes, { keepFloat64: true });
    expect(back.metadata).toEqual({ format: 'pt', note: 'ünïcode' });
    for (const [name, t] of tensors) expectSameArray(back.tensors.get(name), t, name);
    expect([...back.tensors.keys()]).toEqual(['empty', 'f32', 'f64', 'i64', 'mask', 'scalar']);
  });

  it('writes the documented layout: padded header, sorted names, contiguous offsets', () => {
    const bytes = writeSafetensors({ b: NDArray.float32([2], [1, 2]), a: NDArray.int64([1], [5]) });
    const { length, json } = headerOf(bytes);
    expect(length % 8).toBe(0);
    expect(Object.keys(json)).toEqual(['a', 'b']);
    expect(json['a']).toEqual({ dtype: 'I64', shape: [1], data_offsets: [0, 8] });
    expect(json['b']).toEqual({ dtype: 'F32', shape: [2], data_offsets: [8, 16] });
    expect(bytes.length).toBe(8 + length + 16);
    expect(json['__metadata__']).toBeUndefined();
  });

  it('narrows float64 to float32 unless keepFloat64 is set', () => {
    const bytes = writeSafetensors({ x: NDArray.float64([2], [0.1, 1e-50]) });
    const narrowed = readSafetensors(bytes).tensors.get('x')!;
    expect(narrowed.dtype).toBe('float32');
    expect([...narrowed.data]).toEqual([Math.fround(0.1), 0]);
    expect(readSafetensors(bytes, { keepFloat64: true }).tensors.get('x')!.dtype).toBe('float64');
  });

  it('keeps odd tensor names, including __proto__, as ordinary entries', () => {
    const bytes = writeSafetensors(new Map([['__proto__', NDArray.float32([1], [1])], ['a "quoted"\nname', NDArray.float32([1], [2])]]), { __proto__: 'x' } as Record<string, string>);
    const back = readSafetensors(bytes);
    expect(back.tensors.get('__proto__')!.data[0]).toBe(1);
    expect(back.tensors.get('a "quoted"\nname')!.data[0]).toBe(2);
  });

  it('normalises bool data to 0/1 when writing', () => {
    const back = readSafetensors(writeSafetensors({ m: new NDArray('bool', [2], Uint8Array.from([7, 0])) }));
    expect([...back.tensors.get('m')!.data]).toEqual([1, 0]);
  });

  it('refuses to name a tensor __metadata__', () => {
    formatError(() => writeSafetensors({ __metadata__: NDArray.float32([1], [1]) }));
  });
});

describe('safetensors written by Python', () => {
  it('reads every dtype of a file written by the Python fixture script', () => {
    const { tensors } = readSafetensors(fixture('torch_ckpt_expected.safetensors'), { keepFloat64: true });
    const values = (name: string): unknown[] => [...tensors.get(name)!.data];
    expect(tensors.get('f32')!.shape).toEqual([2, 3]);
    expect(tensors.get('f64')!.dtype).toBe('float64');
    expect(values('f16')).toEqual([0.5, -1.25, 65504, 2 ** -24]);
    expect(tensors.get('f16')!.dtype).toBe('float32');
    expect(values('bf16')).toEqual([1, -2.5, 3.140625, -0]);
    expect(Object.is(values('bf16')[3], -0)).toBe(true);
    expect(values('i64')).toEqual([-(2n ** 40n), -1n, 0n, 2n ** 62n]);
    expect(values('i32')).toEqual([-5n, 2n ** 31n - 1n]);
    expect(values('i16')).toEqual([-32768n, 7n]);
    expect(values('i8')).toEqual([-128n, 127n]);
    expect(values('u8')).toEqual([0n, 255n]);
    expect(tensors.get('u8')!.dtype).toBe('int64');
    expect(values('mask')).toEqual([1, 0, 1]);
    expect(tensors.get('mask')!.dtype).toBe('bool');
    expect(tensors.get('scalar')!.shape).toEqual([]);
    expect(values('scalar')).toEqual([3.5]);
    expect(tensors.get('empty')!.shape).toEqual([0, 3]);
  });

  it('reads a real torch-exported weights file exactly', () => {
    const { tensors, metadata } = readSafetensors(fixture('acmix_weights.safetensors'));
    expect(metadata).toEqual({ case: 'acmix_op_stride1', family: 'acmix_op', seed: '0' });
    // Shape, first value and the sum of the float32 bit patterns mod 2^32, computed with numpy.
    const expected: Record<string, [number[], number, number]> = {
      'conv1.bias': [[32], 2964147733, -0.012386031448841095],
      'conv1.weight': [[32, 32, 1, 1], 2374060350, -0.0013234952930361032],
      'conv2.bias': [[32], 827004080, -0.06886421889066696],
      'conv2.weight': [[32, 32, 1, 1], 4084643237, 0.1451701819896698],
      'conv3.bias': [[32], 2933168653, 0.05087213218212128],
      'conv3.weight': [[32, 32, 1, 1], 1180476926, 0.0074528902769088745],
      'conv_p.bias': [[8], 3998518417, 0.002770649502053857],
      'conv_p.weight': [[8, 2, 1, 1], 1730235219, -0.5667386054992676],
      'dep_conv.weight': [[32, 9, 3, 3], 1231343035, 0.9694880843162537],
      'fc.weight': [[9, 12, 1, 1], 2586508770, 0.21899108588695526],
      rate1: [[1], 1055860984, 0.46710944175720215],
      rate2: [[1], 1054870774, 0.4375988841056824],
    };
    expect([...tensors.keys()].sort()).toEqual(Object.keys(expected).sort());
    for (const [name, [shape, bitSum, first]] of Object.entries(expected)) {
      const t = tensors.get(name)!;
      expect(t.dtype).toBe('float32');
      expect(t.shape).toEqual(shape);
      expect(t.data[0]).toBe(first);
      const bits = new Uint32Array((t.data as Float32Array).slice().buffer);
      expect(bits.reduce((a, b) => (a + b) % 2 ** 32, 0)).toBe(bitSum);
    }
    // Our writer's output reads back identically.
    const again = readSafetensors(writeSafetensors(tensors, metadata));
    expect(again.metadata).toEqual(metadata);
    for (const [name, t] of tensors) expectSameArray(again.tensors.get(name), t, name);
  });
});

describe('safetensors validation', () => {
  const f32 = (shape: number[], offsets: [number, number]): unknown => ({ dtype: 'F32', shape, data_offsets: offsets });
  const cases: [string, Uint8Array, RegExp][] = [
    ['a file shorter than 8 bytes', Uint8Array.from([1, 0, 0]), /shorter than the 8-byte header length/],
    ['a header longer than the file', raw('{}').subarray(0, 9), /runs past the end/],
    ['an absurd header length', cat(pk.u64(2n ** 40n), '{}'), /exceeds the 100000000-byte limit/],
    ['a u64 header length above 2^53', cat(pk.u64(2n ** 64n - 1n), '{}'), /exceeds/],
    ['broken JSON', raw('{"a": '), /not valid UTF-8 JSON/],
    ['invalid UTF-8', raw('{"a":{}}').map((b, i) => (i === 10 ? 0xff : b)), /not valid UTF-8 JSON/],
    ['a JSON array', raw('[]'), /must be a JSON object/],
    ['an unknown dtype', raw('{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}', new Uint8Array(8)), /unsupported dtype 'C64'/],
    ['a dtype named like an Object.prototype member', raw('{"a":{"dtype":"constructor","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), /unsupported dtype 'constructor'/],
    ['a missing dtype', raw('{"a":{"shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), /missing or non-string "dtype"/],
    ['a negative dim', raw(JSON.stringify({ a: f32([-1], [0, 4]) }), new Uint8Array(4)), /non-negative integers/],
    ['a fractional dim', raw(JSON.stringify({ a: f32([1.5], [0, 4]) }), new Uint8Array(4)), /non-negative integers/],
    ['begin > end', raw(JSON.stringify({ a: f32([1], [4, 0]) }), new Uint8Array(4)), /0 ≤ begin ≤ end/],
    ['shape/offset mismatch', raw(JSON.stringify({ a: f32([3], [0, 8]) }), new Uint8Array(8)), /needs 12 bytes but data_offsets \[0, 8\] span 8/],
    ['a huge shape', raw(JSON.stringify({ a: f32([2 ** 40, 2 ** 40], [0, 4]) }), new Uint8Array(4)), /needs .* bytes/],
    ['offsets past the end', raw(JSON.stringify({ a: f32([2], [0, 8]) }), new Uint8Array(4)), /run past the end of the 4-byte data section/],
    ['overlapping tensors', raw(JSON.stringify({ a: f32([2], [0, 8]), b: f32([1], [4, 8]) }), new Uint8Array(8)), /overlaps 'a'/],
    ['a gap', raw(JSON.stringify({ a: f32([1], [0, 4]), b: f32([1], [8, 12]) }), new Uint8Array(12)), /gap of 4 bytes before tensor 'b'/],
    ['data not starting at 0', raw(JSON.stringify({ a: f32([1], [4, 8]) }), new Uint8Array(8)), /gap of 4 bytes/],
    ['trailing bytes', raw(JSON.stringify({ a: f32([1], [0, 4]) }), new Uint8Array(6)), /cover 4 bytes but the data section has 6/],
    ['a duplicate name', raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), /lists 'a' twice/],
    ['a duplicate name spelled with an escape', raw('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\\u0061":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), /twice/],
    ['a bool byte of 2', raw('{"m":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}', [2]), /bools must be stored as 0 or 1/],
    ['non-string metadata', raw('{"__metadata__":{"epoch":3}}'), /must map strings to strings/],
    ['a non-object entry', raw('{"a":[1,2]}'), /not an object/],
  ];
  for (const [what, bytes, message] of cases) {
    it(`refuses ${what}`, () => {
      expect(formatError(() => readSafetensors(bytes)).message).toMatch(message);
    });
  }

  it('accepts empty tensors anywhere and an empty file', () => {
    const bytes = raw(JSON.stringify({ z: f32([0], [4, 4]), a: f32([1], [0, 4]), b: f32([2, 0], [4, 4]) }), new Uint8Array(4));
    expect([...readSafetensors(bytes).tensors.keys()]).toEqual(['a', 'z', 'b']);
    expect(readSafetensors(raw('{}')).tensors.size).toBe(0);
  });

  it('refuses every truncation of a valid file', () => {
    const bytes = writeSafetensors({ a: NDArray.float32([3], [1, 2, 3]), b: NDArray.int64([2], [4, 5]) }, { k: 'v' });
    for (let n = 0; n < bytes.length; n++) expect(() => readSafetensors(bytes.subarray(0, n))).toThrow(FormatError);
  });
});

describe('safetensors files', () => {
  it('saves atomically (no temporary file left) and loads back', async () => {
    const dir = tempDir('volution-io-');
    const path = join(dir, 'w.safetensors');
    await writeFile(path, 'old contents');
    await saveSafetensorsFile(path, { w: NDArray.float32([2], [1, 2]) }, { step: '1' });
    expect(await readdir(dir)).toEqual(['w.safetensors']);
    const back = await loadSafetensorsFile(path);
    expect(back.metadata).toEqual({ step: '1' });
    expect([...back.tensors.get('w')!.data]).toEqual([1, 2]);
  });

  it('cleans up the temporary file when the final rename fails', async () => {
    const dir = tempDir('volution-io-');
    // A non-empty directory in the way makes the rename fail after the temporary file is written.
    await mkdir(join(dir, 'target'));
    await writeFile(join(dir, 'target', 'keep'), '');
    await expect(saveSafetensorsFile(join(dir, 'target'), { w: NDArray.float32([1], [1]) })).rejects.toThrow();
    expect(await readdir(dir)).toEqual(['target']);
  });
});
