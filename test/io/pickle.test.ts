import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/ir/ndarray.js';
import { PyGlobal, PyObject, TorchStorage, unpickle } from '../../src/io/pickle.js';
import type { PickleValue } from '../../src/io/pickle.js';
import { cat, fixture, formatError, pk } from './helpers.js';

const P2 = '\x80\x02';
const P4 = '\x80\x04';

describe('unpickle: plain values', () => {
  it('decodes scalars, strings and bytes', () => {
    const bytes = cat(
      P2,
      '(',
      'N',
      '\x88',
      '\x89',
      'K\x07',
      'M\x01\x02',
      pk.int(-5),
      pk.float(0.1),
      pk.str('héllo'),
      '\x8c\x02ok',
      pk.bytes([1, 2, 255]),
      '\x8a\x00', // LONG1 0
      '\x8a\x02\xff\x7f', // LONG1 32767
      '\x8a\x01\xff', // LONG1 -1
      '\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01', // LONG1 2^64
      '\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80', // LONG1 -2^63
      '\x8a\x07\x01\x00\x00\x00\x00\x00\x00', // LONG1 1 in 7 bytes: back to a number
      'l.',
    );
    expect(unpickle(bytes)).toEqual([null, true, false, 7, 0x0201, -5, 0.1, 'héllo', 'ok', Uint8Array.from([1, 2, 255]), 0, 32767, -1, 2n ** 64n, -(2n ** 63n), 1]);
  });

  it('builds dicts, lists, tuples and sets, with the memo', () => {
    const bytes = cat(
      P4,
      '}\x94', // EMPTY_DICT, MEMOIZE 0
      '(',
      pk.str('list'),
      ']\x94(K\x01K\x02e', // [1, 2] (memo 1)
      pk.str('tuple'),
      'K\x01K\x02K\x03\x87', // (1, 2, 3)
      pk.str('same'),
      'h\x01', // BINGET 1: the very same list object
      pk.str('set'),
      '\x8f(K\x01K\x01K\x02\x90', // {1, 2}
      pk.str('frozen'),
      '(K\x05\x91',
      pk.str('t1'),
      'K\x09\x85',
      pk.str('t2'),
      ')K\x01\x86',
      'u',
      'K\x03', // SETITEM 3 → 'three'
      pk.str('three'),
      's',
      '.',
    );
    const d = unpickle(bytes) as Map<PickleValue, PickleValue>;
    expect(d).toBeInstanceOf(Map);
    expect(d.get('list')).toEqual([1, 2]);
    expect(d.get('same')).toBe(d.get('list'));
    expect(d.get('tuple')).toEqual([1, 2, 3]);
    expect(d.get('set')).toEqual(new Set([1, 2]));
    expect(d.get('frozen')).toEqual(new Set([5]));
    expect(d.get('t1')).toEqual([9]);
    expect(d.get('t2')).toEqual([[], 1]);
    expect(d.get(3)).toBe('three');
  });

  it('supports DUP, POP, POP_MARK, DICT, LIST and SETITEM', () => {
    // {1: 2}; d[3] = 'x'; push+POP 9; MARK 7 8 POP_MARK; LIST [4] stored under 5; DUP+POP.
    const bytes = cat(P2, '(K\x01K\x02d', 'K\x03', pk.str('x'), 's', 'K\x09', '0', '(K\x07K\x08', '1', 'K\x05(K\x04l', 's', '2', '0', '.');
    const d = unpickle(bytes) as Map<PickleValue, PickleValue>;
    expect([...d]).toEqual([
      [1, 2],
      [3, 'x'],
      [5, [4]],
    ]);
  });

  it('treats a whole protocol-2 bytes object through _codecs.encode and __builtin__.bytes', () => {
    const bytes = cat(P2, pk.global('_codecs', 'encode'), pk.str('\u00ff\u0000A'), pk.str('latin1'), '\x86R', pk.global('__builtin__', 'bytes'), ')R', '\x86.');
    expect(unpickle(bytes)).toEqual([Uint8Array.from([255, 0, 65]), new Uint8Array(0)]);
  });

  it('rebuilds an argparse Namespace as an inert PyObject', () => {
    const bytes = cat(P2, pk.global('argparse', 'Namespace'), ')\x81', '}(', pk.str('lr'), pk.float(0.5), pk.str('name'), pk.str('x'), 'ub.');
    const ns = unpickle(bytes);
    expect(ns).toBeInstanceOf(PyObject);
    expect((ns as PyObject).className).toBe('argparse.Namespace');
    expect(Object.fromEntries((ns as PyObject).attrs)).toEqual({ lr: 0.5, name: 'x' });
  });

  it('leaves an allow-listed global that is never called as an inert reference', () => {
    const g = unpickle(cat(P2, pk.global('collections', 'OrderedDict'), '.'));
    expect(g).toBeInstanceOf(PyGlobal);
    expect((g as PyGlobal).qualifiedName).toBe('collections.OrderedDict');
  });

  it('hands persistent ids to persistentLoad', () => {
    const storage = new TorchStorage('float32', new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer));
    const seen: PickleValue[] = [];
    const bytes = cat(
      P2,
      pk.global('torch._utils', '_rebuild_tensor_v2'),
      '(',
      '(',
      pk.str('storage'),
      pk.global('torch', 'FloatStorage'),
      pk.str('0'),
      pk.str('cpu'),
      'K\x04tQ',
      'K\x01', // offset 1
      'K\x03\x85', // size (3,)
      'K\x01\x85', // stride (1,)
      '\x89',
      pk.global('collections', 'OrderedDict'),
      ')R',
      'tR.',
    );
    const t = unpickle(bytes, {
      persistentLoad: (pid) => {
        seen.push(pid);
        return storage;
      },
    });
    expect(t).toBeInstanceOf(NDArray);
    expect([...(t as NDArray).data]).toEqual([2, 3, 4]);
    expect((seen[0] as PickleValue[])[0]).toBe('storage');
  });
});

describe('unpickle: hostile input', () => {
  it('refuses os.system from a real hostile pickle without running it', () => {
    const err = formatError(() => unpickle(fixture('hostile_system.pkl')));
    expect(err.message).toMatch(/refused to load the global 'posix\.system'/);
    expect(err.message).toMatch(/may be malicious/);
  });

  it('refuses builtins.eval reached through STACK_GLOBAL', () => {
    expect(formatError(() => unpickle(fixture('hostile_eval.pkl'))).message).toMatch(/'builtins\.eval'/);
  });

  for (const [module, name] of [
    ['os', 'system'],
    ['posix', 'system'],
    ['builtins', 'eval'],
    ['builtins', 'exec'],
    ['__builtin__', 'getattr'],
    ['subprocess', 'Popen'],
    ['torch', 'load'],
    ['numpy', 'load'],
    ['__main__', 'Model'],
    ['copyreg', '_reconstructor'],
    ['torch._utils', '_rebuild_qtensor'],
  ] as const) {
    it(`refuses the global ${module}.${name}`, () => {
      expect(formatError(() => unpickle(cat(P2, pk.global(module, name), pk.str('x'), '\x85R.'))).message).toMatch(`'${module}.${name}'`);
    });
  }

  it('refuses calling an allow-listed marker or a non-global', () => {
    expect(formatError(() => unpickle(cat(P2, pk.global('torch', 'FloatStorage'), ')R.'))).message).toMatch(/cannot be called/);
    expect(formatError(() => unpickle(cat(P2, pk.str('os.system'), ')R.'))).message).toMatch(/REDUCE called a string/);
    expect(formatError(() => unpickle(cat(P2, pk.global('argparse', 'Namespace'), ')R.'))).message).toMatch(/cannot be called/);
  });

  it('refuses BUILD on objects it does not know how to fill', () => {
    expect(formatError(() => unpickle(cat(P2, ']', '}', 'b.'))).message).toMatch(/BUILD on a list/);
  });

  it('refuses persistent ids when no loader is given', () => {
    expect(formatError(() => unpickle(cat(P2, pk.str('x'), 'Q.'))).message).toMatch(/persistent id/);
  });

  it('refuses memo reads of unwritten entries', () => {
    expect(formatError(() => unpickle(cat(P2, 'h\x05.'))).message).toMatch(/memo entry 5/);
    expect(formatError(() => unpickle(cat(P2, 'q\x00.'))).message).toMatch(/empty stack/);
  });

  it('caps the stack and the nesting depth', () => {
    expect(formatError(() => unpickle(cat(P2, 'N'.repeat((1 << 20) + 1), '.'))).message).toMatch(/stack grew past/);
    expect(formatError(() => unpickle(cat(P2, '('.repeat(5000), '.'))).message).toMatch(/nesting deeper than/);
  });

  it('checks declared lengths against the remaining bytes', () => {
    expect(formatError(() => unpickle(cat(P4, '\x8d', pk.u64(2n ** 62n), 'abc'))).message).toMatch(/declares 4611686018427387904 bytes but only 3 remain/);
    expect(formatError(() => unpickle(cat(P2, 'X', pk.u32(0xffffffff), 'abc'))).message).toMatch(/needs 4294967295 bytes/);
    expect(formatError(() => unpickle(cat(P4, '\x95', pk.u64(1000), 'N.'))).message).toMatch(/a frame declares 1000 bytes/);
    expect(formatError(() => unpickle(cat(P2, '\x8b', pk.u32(0x7fffffff)))).message).toMatch(/implausible/);
  });

  it('refuses stack underflow, unbalanced marks and leftovers at STOP', () => {
    expect(formatError(() => unpickle(cat(P2, 'a.'))).message).toMatch(/empty stack/);
    expect(formatError(() => unpickle(cat(P2, 'u.'))).message).toMatch(/MARK that is not there/);
    expect(formatError(() => unpickle(cat(P2, 'NN.'))).message).toMatch(/malformed stack/);
    expect(formatError(() => unpickle(cat(P2, '(N.'))).message).toMatch(/malformed stack/);
    expect(formatError(() => unpickle(cat(P2, 'Na.'))).message).toMatch(/empty stack/);
    expect(formatError(() => unpickle(cat(P2, 'K\x01(K\x02e.'))).message).toMatch(/APPEND on a number/);
    expect(formatError(() => unpickle(cat(P2, ']K\x01K\x02s.'))).message).toMatch(/SETITEM on a list/);
  });

  it('refuses protocol 0 opcodes, out-of-band buffers, extensions and newer protocols', () => {
    for (const op of ['I1\n.', 'S"x"\n.', 'Vx\n.', 'p0\n', 'g0\n', 'i__main__\nX\n', '\x82\x01', '\x97', '\x98', 'Px\n']) {
      expect(formatError(() => unpickle(cat(P2, op))).message).toMatch(/unsupported opcode/);
    }
    expect(formatError(() => unpickle(cat('\x80\x06N.'))).message).toMatch(/protocol 6/);
  });

  it('refuses unsupported numpy dtypes and torch storages', () => {
    for (const descr of ['O8', 'c16', 'u8', 'V8', 'U4', 'constructor', '__proto__']) {
      expect(formatError(() => unpickle(cat(P2, pk.global('numpy', 'dtype'), pk.str(descr), '\x89\x88\x87R.'))).message).toMatch(`numpy dtype "${descr}" is not supported`);
    }
    // A bigint where a descriptor belongs must not trip up the error message itself.
    expect(formatError(() => unpickle(cat(P2, pk.global('numpy', 'dtype'), '\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01\x85R.'))).message).toMatch(/numpy dtype bigint/);
    expect(formatError(() => unpickle(cat(P2, pk.global('torch', 'ComplexFloatStorage'), '.'))).message).toMatch(/torch\.ComplexFloatStorage are not supported/);
  });

  it('refuses an unterminated or overlong GLOBAL name', () => {
    expect(formatError(() => unpickle(cat(P2, 'cos\nsystem'))).message).toMatch(/unterminated or too long/);
    expect(formatError(() => unpickle(cat(P2, 'c', 'x'.repeat(5000), '\nname\n.'))).message).toMatch(/unterminated or too long/);
  });

  it('refuses every truncation of a valid pickle', () => {
    for (const name of ['pdparams_p2.pdparams', 'pdparams_p4.pdparams', 'pdparams_p5.pdparams']) {
      const bytes = fixture(name);
      unpickle(bytes);
      for (let n = 0; n < bytes.length; n++) formatError(() => unpickle(bytes.subarray(0, n)));
    }
  });
});
