import { describe, expect, it } from 'vitest';
import { StateDictError } from '../../src/errors.js';
import { loadPdparams, readPdparams } from '../../src/io/paddle.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { cat, expectSameArray, fixture, formatError, pk } from './helpers.js';

describe('loadPdparams', () => {
  const expected = readSafetensors(fixture('pdparams_expected.safetensors'), { keepFloat64: true }).tensors;

  for (const protocol of [2, 4, 5]) {
    it(`reads a protocol-${protocol} pickle of numpy arrays exactly`, () => {
      const { tensors, skipped } = readPdparams(fixture(`pdparams_p${protocol}.pdparams`), { keepFloat64: true });
      expect([...tensors.keys()]).toEqual([...expected.keys()]);
      for (const [name, t] of expected) expectSameArray(tensors.get(name), t, name);
      // paddle's structured-name table is bookkeeping, not a skipped weight.
      expect(skipped).toEqual([]);
    });
  }

  it('transposes Fortran-order arrays into C order and byte-swaps big-endian ones', () => {
    const sd = loadPdparams(fixture('pdparams_p2.pdparams'));
    expect(sd.get('fortran')!.shape).toEqual([2, 3]);
    expect([...sd.get('big_endian')!.data]).toEqual([1.5, -2, 3.25]);
    expect(sd.get('scalar')!.shape).toEqual([]);
    expect([...sd.get('scalar')!.data]).toEqual([2.5]);
    expect(sd.get('relative_position_index')!.dtype).toBe('int64');
    expect(sd.get('f64')!.dtype).toBe('float32');
    expect(sd.get('mask')!.dtype).toBe('bool');
    expect([...sd.get('mask')!.data]).toEqual([1, 0, 0, 1]);
  });

  it('refuses a pickle that calls os.system', () => {
    expect(formatError(() => loadPdparams(fixture('hostile_system.pkl'))).message).toMatch(/'posix\.system'/);
  });

  it('refuses pickles that are not {name: array} mappings', () => {
    expect(formatError(() => loadPdparams(cat('\x80\x02]', '.'))).message).toMatch(/not a \{name: array\} mapping/);
    expect(() => loadPdparams(cat('\x80\x02}', pk.str('epoch'), 'K\x01s.'))).toThrow(StateDictError);
    expect(formatError(() => loadPdparams(cat('\x80\x02}', pk.str('UnpackBigParamInfor@@'), '}s.'))).message).toMatch(/protocol=4/);
  });

  it('reports non-array entries', () => {
    // {'w': numpy _frombuffer(b'...', dtype('<f4'), (2,), 'C'), 'lr': 0.1}
    const dtype = cat(pk.global('numpy', 'dtype'), pk.str('f4'), '\x89\x88\x87R', '(K\x03', pk.str('<'), 'NNN', pk.int(-1), pk.int(-1), 'K\x00tb');
    const array = cat(pk.global('numpy._core.numeric', '_frombuffer'), '(', pk.bytes(new Uint8Array(new Float32Array([1, 2]).buffer)), dtype, 'K\x02\x85', pk.str('C'), 'tR');
    const { tensors, skipped } = readPdparams(cat('\x80\x05}', pk.str('w'), array, 's', pk.str('lr'), pk.float(0.1), 's.'));
    expect([...tensors.get('w')!.data]).toEqual([1, 2]);
    expect(skipped).toEqual(['lr: number']);
  });
});
