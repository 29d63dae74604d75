import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/ir/ndarray.js';
import { detectCheckpointFormat, loadCheckpointFile, readCheckpoint, writeSafetensors } from '../../src/io/index.js';
import { expectSameArray, fixture, fixturePath, formatError } from './helpers.js';

describe('loadCheckpointFile', () => {
  it('sniffs each format by content', async () => {
    const st = await loadCheckpointFile(fixturePath('acmix_weights.safetensors'));
    expect(st.format).toBe('safetensors');
    expect(st.metadata.case).toBe('acmix_op_stride1');
    expect(st.tensors.get('rate1')!.shape).toEqual([1]);

    const pt = await loadCheckpointFile(fixturePath('torch_ckpt.pth'));
    expect(pt.format).toBe('torch');
    expect(pt.metadata).toEqual({ state_dict_key: 'model', stripped_prefix: 'module.' });
    expect(pt.tensors.has('w_t')).toBe(true);
    expect(pt.skipped).toEqual([]);

    const ema = await loadCheckpointFile(fixturePath('torch_ckpt.pth'), { key: 'model_ema' });
    expect([...ema.tensors.keys()]).toEqual(['w']);

    const pd = await loadCheckpointFile(fixturePath('pdparams_p4.pdparams'), { keepFloat64: true });
    expect(pd.format).toBe('pdparams');
    expect(pd.tensors.get('f64')!.dtype).toBe('float64');
  });

  it('refuses legacy torch files, hostile pickles and unknown formats', async () => {
    await expect(loadCheckpointFile(fixturePath('torch_legacy.pth'))).rejects.toThrow(/legacy/);
    await expect(loadCheckpointFile(fixturePath('hostile_eval.pkl'))).rejects.toThrow(/builtins\.eval/);
    expect(formatError(() => readCheckpoint(new TextEncoder().encode('hello world'))).message).toMatch(/unrecognised checkpoint format \(first bytes: 68 65 6c 6c/);
    expect(formatError(() => readCheckpoint(new Uint8Array(0))).message).toMatch(/first bytes: none/);
  });

  it('tells safetensors from a pickle even when the header length starts with 0x80 0x02', () => {
    // Pad metadata until the header is exactly 0x280 bytes: its first bytes then read 80 02 00 …
    let bytes = writeSafetensors({ w: NDArray.float32([1], [1]) });
    for (let pad = 0; bytes[0] !== 0x80 || bytes[1] !== 0x02; pad++) bytes = writeSafetensors({ w: NDArray.float32([1], [1]) }, { pad: 'x'.repeat(pad) });
    expect(detectCheckpointFormat(bytes)).toBe('safetensors');
    expect(readCheckpoint(bytes).tensors.get('w')!.data[0]).toBe(1);
  });

  it('detects every fixture format', () => {
    expect(detectCheckpointFormat(fixture('torch_legacy.pth'))).toBe('torch-legacy');
    expect(detectCheckpointFormat(fixture('pdparams_p2.pdparams'))).toBe('pdparams');
    expect(detectCheckpointFormat(fixture('pdparams_p5.pdparams'))).toBe('pdparams');
    expect(detectCheckpointFormat(fixture('torch_cfgnode.pth'))).toBe('torch');
    expect(detectCheckpointFormat(fixture('torch_ckpt_expected.safetensors'))).toBe('safetensors');
    expect(detectCheckpointFormat(new Uint8Array([1, 2, 3]))).toBeUndefined();
  });
});

describe('input buffers', () => {
  it('accepts Node Buffers (whose slice() is a view) as well as Uint8Arrays', () => {
    const st = readCheckpoint(readFileSync(fixturePath('torch_ckpt_expected.safetensors')), { keepFloat64: true });
    const ref = readCheckpoint(fixture('torch_ckpt_expected.safetensors'), { keepFloat64: true });
    for (const [name, t] of ref.tensors) expectSameArray(st.tensors.get(name), t, name);
    const pt = readCheckpoint(readFileSync(fixturePath('torch_ckpt.pth')), { keepFloat64: true });
    for (const [name, t] of ref.tensors) expectSameArray(pt.tensors.get(name), t, name);
    const pd = readCheckpoint(readFileSync(fixturePath('pdparams_p4.pdparams')));
    expectSameArray(pd.tensors.get('linear.weight'), readCheckpoint(fixture('pdparams_p4.pdparams')).tensors.get('linear.weight'), 'linear.weight');
  });

  it('reads a checkpoint re-packed with deflate', () => {
    const deflated = readCheckpoint(readFileSync(fixturePath('torch_deflated.pth')));
    const stored = readCheckpoint(fixture('torch_cfgnode.pth'));
    expect([...deflated.tensors.keys()]).toEqual(['conv.weight', 'conv.bias']);
    for (const [name, t] of stored.tensors) expectSameArray(deflated.tensors.get(name), t, name);
  });

  it('refuses every fixture truncated anywhere with a FormatError', () => {
    const names = readdirSync(fixturePath('.')).filter((n) => !n.endsWith('.py'));
    for (const name of names) {
      const bytes = fixture(name);
      for (let k = 0; k < 48; k++) {
        const n = Math.floor((bytes.length * k) / 48);
        formatError(() => readCheckpoint(bytes.subarray(0, n)));
      }
    }
  });
});
