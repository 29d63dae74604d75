import { describe, expect, it } from 'vitest';
import { FormatError, StateDictError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { PyObject } from '../../src/io/pickle.js';
import type { PickleValue } from '../../src/io/pickle.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { extractStateDict, loadTorchCheckpoint, readTorchCheckpoint } from '../../src/io/torch.js';
import { openZip } from '../../src/io/zip.js';
import { cat, expectSameArray, fixture, formatError, makeZip, pk } from './helpers.js';

type Dict = Map<PickleValue, PickleValue>;

/** The entries of a fixture archive, with some replaced or added. */
function rezip(name: string, changes: Record<string, Uint8Array>): Uint8Array {
  const zip = openZip(fixture(name));
  const entries = zip.names().map((n) => ({ name: n, data: changes[n] ?? zip.read(n) }));
  for (const [n, data] of Object.entries(changes)) if (!zip.names().includes(n)) entries.push({ name: n, data });
  return makeZip(entries);
}

/** A one-tensor checkpoint whose data.pkl is hand-assembled: `_rebuild_tensor_v2` over storage '0'. */
function oneTensor(storage: Uint8Array, numel: number, offset: number, size: number[], stride: number[]): Uint8Array {
  const tuple = (xs: number[]): Uint8Array => cat('(', ...xs.map((x) => pk.int(x)), 't');
  const pkl = cat(
    '\x80\x02}',
    pk.str('w'),
    pk.global('torch._utils', '_rebuild_tensor_v2'),
    '((',
    pk.str('storage'),
    pk.global('torch', 'FloatStorage'),
    pk.str('0'),
    pk.str('cpu'),
    pk.int(numel),
    'tQ',
    pk.int(offset),
    tuple(size),
    tuple(stride),
    '\x89',
    pk.global('collections', 'OrderedDict'),
    ')RtR',
    's.',
  );
  return makeZip([
    { name: 'ck/data.pkl', data: pkl },
    { name: 'ck/data/0', data: storage },
  ]);
}

describe('loadTorchCheckpoint', () => {
  const expected = readSafetensors(fixture('torch_ckpt_expected.safetensors'), { keepFloat64: true }).tensors;

  it('decodes every dtype, strided views and shared storages exactly', () => {
    const sd = loadTorchCheckpoint(fixture('torch_ckpt.pth'), { keepFloat64: true });
    expect([...sd.keys()]).toEqual([...expected.keys()]);
    for (const [name, t] of expected) expectSameArray(sd.get(name), t, name);
    // The non-contiguous views really were views: spot-check against the layout.
    expect(sd.get('w_t')!.shape).toEqual([4, 3]);
    expect(sd.get('strided')!.shape).toEqual([3, 3]);
    expect(sd.get('view_b')!.data[0]).toBe(sd.get('view_a')!.data[2]);
  });

  it('narrows float64 to float32 by default', () => {
    const f64 = loadTorchCheckpoint(fixture('torch_ckpt.pth')).get('f64')!;
    expect(f64.dtype).toBe('float32');
    expect([...f64.data]).toEqual([...expected.get('f64')!.data].map((x) => Math.fround(x as number)));
  });

  it('exposes the rest of the checkpoint as inert data', () => {
    const ckpt = readTorchCheckpoint(fixture('torch_ckpt.pth')) as Dict;
    expect(ckpt.get('epoch')).toBe(3);
    expect(ckpt.get('max_accuracy')).toBe(81.5);
    const args = ckpt.get('args') as PyObject;
    expect(args).toBeInstanceOf(PyObject);
    expect(args.className).toBe('argparse.Namespace');
    expect(args.attrs.get('lr')).toBe(0.1);
    expect(args.attrs.get('model')).toBe('uniformer_small');
    expect(args.attrs.get('betas')).toEqual([0.9, 0.999]);
    expect(args.attrs.get('tags')).toEqual(new Set(['a']));
    expect(args.attrs.get('blob')).toEqual(Uint8Array.from([0, 255]));
    expect(args.attrs.get('empty')).toEqual(new Uint8Array(0));
    const state = ((ckpt.get('optimizer') as Dict).get('state') as Dict).get(0) as Dict;
    expect(state.get('step')).toBe(1);
    expect([...(state.get('exp_avg') as NDArray).data]).toEqual([1, 1]);
  });

  it('reads a yacs CfgNode config and a DDP state dict under state_dict', () => {
    const ckpt = readTorchCheckpoint(fixture('torch_cfgnode.pth')) as Dict;
    const cfg = ckpt.get('config') as Dict;
    expect((cfg.get('MODEL') as Dict).get('NAME')).toBe('acmix_swin_tiny');
    expect((cfg.get('MODEL') as Dict).get('DROP_PATH_RATE')).toBe(0.2);
    expect((cfg.get('DATA') as Dict).get('IMG_SIZE')).toBe(224);
    const sd = extractStateDict(ckpt);
    expect(sd.source).toBe('state_dict');
    expect(sd.strippedModulePrefix).toBe(true);
    expect([...sd.tensors.keys()]).toEqual(['conv.weight', 'conv.bias']);
    expect(sd.tensors.get('conv.weight')!.shape).toEqual([2, 1, 2, 2]);
    expect([...sd.tensors.get('conv.weight')!.data]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('refuses the legacy format with instructions to convert', () => {
    const err = formatError(() => loadTorchCheckpoint(fixture('torch_legacy.pth')));
    expect(err.message).toMatch(/legacy \(pre-1\.6, non-zip\) torch\.save format/);
    expect(err.message).toMatch(/torch\.save\(torch\.load\(/);
  });

  it('refuses a checkpoint that pickles os.system', () => {
    expect(formatError(() => loadTorchCheckpoint(fixture('hostile_torch.pth'))).message).toMatch(/'posix\.system'.*may be malicious/);
  });

  it('refuses archives without data.pkl, big-endian data and wrong storage sizes', () => {
    expect(formatError(() => readTorchCheckpoint(makeZip([{ name: 'm/constants.pkl', data: new Uint8Array(1) }]))).message).toMatch(/no <folder>\/data\.pkl/);
    const big = rezip('torch_cfgnode.pth', { 'torch_cfgnode/byteorder': new TextEncoder().encode('big') });
    expect(formatError(() => readTorchCheckpoint(big)).message).toMatch(/big-endian/);
    const little = rezip('torch_cfgnode.pth', { 'torch_cfgnode/byteorder': new TextEncoder().encode('little') });
    expect(extractStateDict(readTorchCheckpoint(little)).tensors.size).toBe(2);
    const short = rezip('torch_cfgnode.pth', { 'torch_cfgnode/data/0': new Uint8Array(4) });
    expect(formatError(() => readTorchCheckpoint(short)).message).toMatch(/should hold 8 float32 elements/);
  });

  it('checks views against their storage', () => {
    const storage = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
    const t = loadTorchCheckpoint(oneTensor(storage, 6, 1, [2, 2], [1, 2])).get('w')!;
    expect([...t.data]).toEqual([2, 4, 3, 5]);
    expect(formatError(() => loadTorchCheckpoint(oneTensor(storage, 6, 3, [2, 2], [1, 2]))).message).toMatch(/reaches element 6, but its storage holds only 6/);
  });

  it('refuses a tiny file that would materialise huge tensors', () => {
    // One float broadcast with zero strides to 10^5 × 10^5 elements: 40 GB from a ~400-byte file.
    const storage = new Uint8Array(4);
    expect(formatError(() => loadTorchCheckpoint(oneTensor(storage, 1, 0, [100_000, 100_000], [0, 0]))).message).toMatch(/more than \d+ bytes/);
    // Small broadcasts stay fine.
    expect([...loadTorchCheckpoint(oneTensor(storage, 1, 0, [3], [0])).get('w')!.data]).toEqual([0, 0, 0]);
  });

  it('refuses every truncation', () => {
    const bytes = fixture('torch_cfgnode.pth');
    for (let n = 0; n < bytes.length; n++) expect(() => readTorchCheckpoint(bytes.subarray(0, n))).toThrow(FormatError);
  });
});

describe('extractStateDict', () => {
  const t = (x: number): NDArray => NDArray.float32([1], [x]);

  it('prefers model, then state_dict, then the object itself; key selects explicitly', () => {
    const ckpt = readTorchCheckpoint(fixture('torch_ckpt.pth'));
    const sd = extractStateDict(ckpt);
    expect(sd.source).toBe('model');
    expect(sd.strippedModulePrefix).toBe(true);
    expect(sd.skipped).toEqual([]);
    const ema = extractStateDict(ckpt, { key: 'model_ema' });
    expect(ema.source).toBe('model_ema');
    expect([...ema.tensors.get('w')!.data]).toEqual([0.25, 0.25]);
    expect(() => extractStateDict(ckpt, { key: 'nope' })).toThrow(/no mapping under 'nope'; its top-level keys are 'model', 'model_ema', 'epoch'/);
  });

  it('treats a bare mapping as the state dict and reports non-tensor entries', () => {
    const sd = extractStateDict(
      new Map<PickleValue, PickleValue>([
        ['a', t(1)],
        ['module.b', t(2)],
        ['note', 'text'],
        [7, t(3)],
      ]),
    );
    expect(sd.source).toBeNull();
    expect(sd.strippedModulePrefix).toBe(false);
    expect([...sd.tensors.keys()]).toEqual(['a', 'module.b']);
    expect(sd.skipped).toEqual(['note: string', '<number key>: tensor float32[1]']);
  });

  it('falls back when model is not a mapping', () => {
    const sd = extractStateDict(new Map<PickleValue, PickleValue>([['model', 'resnet'], ['state_dict', new Map([['w', t(1)]])]]));
    expect(sd.source).toBe('state_dict');
  });

  it('refuses non-mappings and mappings without tensors', () => {
    expect(() => extractStateDict([t(1)])).toThrow(StateDictError);
    expect(() => extractStateDict(new Map<PickleValue, PickleValue>([['epoch', 3]]))).toThrow(/no tensors found in the checkpoint; its keys are 'epoch'/);
  });
});
