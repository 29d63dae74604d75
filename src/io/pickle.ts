/**
 * A safe unpickler for the pickles inside PyTorch checkpoints and
 * PaddlePaddle `.pdparams` files (pickle protocols 2–5).
 *
 * It never executes anything: opcodes are interpreted into plain JS values,
 * and GLOBAL/STACK_GLOBAL may only name an allow-listed callable or class,
 * each mapped to an inert JS reconstruction (tensors, numpy arrays, ordered
 * dicts, argparse/yacs configs). Any other global (`os.system`,
 * `builtins.eval`, an arbitrary class, …) is refused with a `FormatError` the
 * moment it is named.
 *
 * Value mapping: dict/OrderedDict/yacs CfgNode → `Map` (keys of any type,
 * insertion order kept); list and tuple → array; set/frozenset → `Set`;
 * int → number, or bigint beyond ±2^53; float → number; str → string;
 * bytes/bytearray → `Uint8Array` (a view into the input: read-only);
 * bool → boolean; None → null; torch tensors and numpy arrays → `NDArray`;
 * an argparse `Namespace` → `PyObject`.
 *
 * Guards: every length is checked against the remaining input before it is
 * read; the stack, mark depth, memo and containers are capped; tensors are
 * materialised against a byte budget, so a small file cannot make the reader
 * allocate far more than its own size.
 */
import { FormatError, fmtShape } from '../errors.js';
import { NDArray, stridesOf } from '../ir/ndarray.js';
import { ITEM_SIZE, decodeView, irDType } from './elements.js';
import type { DecodeOptions, ElementType } from './elements.js';

/** A reference to an allow-listed global that was named but not called. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An inert instance of an allow-listed class (e.g. `argparse.Namespace`): its class name and attributes. */
export class PyObject {
  readonly attrs = new Map<string, PickleValue>();
  constructor(readonly className: string) {}
}

/** A torch storage resolved by a persistent id: raw little-endian bytes of one element type. */
export class TorchStorage {
  constructor(
    readonly elementType: ElementType,
    readonly bytes: Uint8Array,
  ) {}
}

/** A numpy dtype: element type and byte order. */
class NumpyDType extends PyObject {
  littleEndian = true;
  constructor(
    descr: string,
    readonly elementType: ElementType,
  ) {
    super('numpy.dtype');
    this.attrs.set('descr', descr);
  }
}

/** `numpy.core.multiarray._reconstruct` makes an empty array that a later BUILD fills in. */
class PendingArray extends PyObject {
  built: NDArray | undefined;
  constructor() {
    super('numpy.ndarray');
  }
}

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | Set<PickleValue>
  | NDArray
  | TorchStorage
  | PyObject
  | PyGlobal;

export interface UnpickleOptions extends DecodeOptions {
  /**
   * Resolves a persistent id (BINPERSID), which is how torch refers to its
   * storages. Without it, persistent ids are refused.
   */
  persistentLoad?: (pid: PickleValue) => PickleValue;
  /** Budget for the bytes of all tensors materialised while unpickling (default 8 × input + 64 MiB). */
  maxTensorBytes?: number;
}

/**
 * Caps on the machine's state. Python's pickler cannot nest deeper than its
 * recursion limit (~1000) and pushes container items in batches of 1000, so
 * real pickles stay far below these.
 */
const MAX_STACK = 1 << 20;
const MAX_MARKS = 4096;
/** V8 Maps and Sets hold at most 2^24 entries; refuse before hitting that RangeError. */
const MAX_ENTRIES = 10_000_000;
/** Longest int (LONG1/LONG4) accepted, in bytes; checkpoints only hold small ints. */
const MAX_LONG_BYTES = 1024;
const MAX_LINE = 1024;

// Lookup tables are Maps: a plain object would answer names like 'constructor' from its prototype.
const TORCH_STORAGES: ReadonlyMap<string, ElementType> = new Map(
  Object.entries({
    FloatStorage: 'float32',
    DoubleStorage: 'float64',
    HalfStorage: 'float16',
    BFloat16Storage: 'bfloat16',
    LongStorage: 'int64',
    IntStorage: 'int32',
    ShortStorage: 'int16',
    CharStorage: 'int8',
    ByteStorage: 'uint8',
    BoolStorage: 'bool',
    // torch ≥ 2 pickles byte-addressed storages as UntypedStorage; torch reads them as uint8.
    UntypedStorage: 'uint8',
  } satisfies Record<string, ElementType>),
);

/** numpy dtype descriptors (`dtype.str` without the byte-order character) accepted in `.pdparams` arrays. */
const NUMPY_DTYPES: ReadonlyMap<string, ElementType> = new Map(
  Object.entries({
    f8: 'float64',
    f4: 'float32',
    f2: 'float16',
    i8: 'int64',
    i4: 'int32',
    i2: 'int16',
    i1: 'int8',
    u4: 'uint32',
    u2: 'uint16',
    u1: 'uint8',
    b1: 'bool',
  } satisfies Record<string, ElementType>),
);

const NUMPY_CORE = ['numpy.core', 'numpy._core']; // numpy 1.x and 2.x module names

function fail(what: string): never {
  throw new FormatError(`pickle: ${what}`);
}

/** Short description of a value's kind, for error messages. */
export function kindOf(v: PickleValue): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'list/tuple';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Map) return 'dict';
  if (v instanceof Set) return 'set';
  if (v instanceof NDArray) return `tensor ${v.dtype}${fmtShape(v.shape)}`;
  if (v instanceof TorchStorage) return `${v.elementType} storage`;
  if (v instanceof PyObject) return v.className;
  if (v instanceof PyGlobal) return `reference to ${v.qualifiedName}`;
  return typeof v;
}

/** A string quoted, anything else by its kind (JSON.stringify would throw on a bigint). */
function describe(v: PickleValue): string {
  return typeof v === 'string' ? JSON.stringify(v) : kindOf(v);
}

function isIndexList(v: PickleValue): v is number[] {
  return Array.isArray(v) && v.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0);
}

function expectArgs(fn: string, args: PickleValue[], min: number, max = min): void {
  if (args.length < min || args.length > max) fail(`${fn} got ${args.length} arguments, expected ${min === max ? min : `${min}–${max}`}; the file is corrupt or not a plain weights file`);
}

type Call = (args: PickleValue[], u: Unpickler) => PickleValue;

function rebuildTensor(args: PickleValue[], u: Unpickler): PickleValue {
  const fn = 'torch._utils._rebuild_tensor_v2';
  expectArgs(fn, args, 6, 7);
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof TorchStorage)) fail(`${fn}: the first argument is a ${kindOf(storage!)}, not a storage`);
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) fail(`${fn}: bad storage offset ${String(offset)}`);
  if (!isIndexList(size!) || !isIndexList(stride!) || size.length !== stride.length) fail(`${fn}: size and stride must be equal-length lists of non-negative integers`);
  return u.materialize(storage.elementType, storage.bytes, true, offset, size, stride, fn);
}

function rebuildParameter(args: PickleValue[]): PickleValue {
  expectArgs('torch._utils._rebuild_parameter', args, 3, 4);
  if (!(args[0] instanceof NDArray)) fail(`torch._utils._rebuild_parameter: the data is a ${kindOf(args[0]!)}, not a tensor`);
  return args[0];
}

function makeSet(args: PickleValue[], u: Unpickler): PickleValue {
  expectArgs('set', args, 0, 1);
  const items = args[0] ?? [];
  if (!Array.isArray(items)) fail(`set() of a ${kindOf(items)} is not supported`);
  const s = new Set<PickleValue>();
  for (const item of items) u.add(s, item);
  return s;
}

function makeBytes(args: PickleValue[]): PickleValue {
  expectArgs('bytes', args, 0, 1);
  const src = args[0] ?? new Uint8Array(0);
  if (!(src instanceof Uint8Array)) fail(`bytes() of a ${kindOf(src)} is not supported`);
  return src;
}

/** `_codecs.encode(text, 'latin1')` is how protocol 2 spells a bytes object. */
function codecsEncode(args: PickleValue[]): PickleValue {
  expectArgs('_codecs.encode', args, 2);
  const [text, encoding] = args;
  if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) fail('_codecs.encode is only supported as encode(str, "latin1")');
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff) fail('_codecs.encode: the text has characters outside latin-1; the file is corrupt');
    out[i] = c;
  }
  return out;
}

function numpyDType(args: PickleValue[]): PickleValue {
  expectArgs('numpy.dtype', args, 1, 3);
  const descr = args[0];
  const elem = typeof descr === 'string' ? NUMPY_DTYPES.get(descr) : undefined;
  if (elem === undefined) fail(`numpy dtype ${describe(descr!)} is not supported (supported: ${[...NUMPY_DTYPES.keys()].join(', ')}); save plain numeric arrays`);
  return new NumpyDType(descr as string, elem);
}

function numpyReconstruct(args: PickleValue[]): PickleValue {
  expectArgs('numpy _reconstruct', args, 3);
  const cls = args[0];
  if (!(cls instanceof PyGlobal) || cls.qualifiedName !== 'numpy.ndarray') fail('numpy _reconstruct is only supported for numpy.ndarray');
  return new PendingArray();
}

/** numpy ≥ 1.16 with pickle protocol 5: `_frombuffer(buffer, dtype, shape, order)`. */
function numpyFromBuffer(args: PickleValue[], u: Unpickler): PickleValue {
  expectArgs('numpy _frombuffer', args, 4);
  const [buf, dtype, shape, order] = args;
  if (!(buf instanceof Uint8Array) || !(dtype instanceof NumpyDType) || (order !== 'C' && order !== 'F')) fail('numpy _frombuffer: unexpected arguments; the file is corrupt');
  return u.numpyArray(shape!, dtype, order === 'F', buf);
}

/** REDUCE targets: each maps a Python callable to an inert JS reconstruction. */
const CALLS = new Map<string, Call>([
  [
    'collections.OrderedDict',
    (args) => {
      expectArgs('OrderedDict', args, 0);
      return new Map();
    },
  ],
  ['torch._utils._rebuild_tensor_v2', rebuildTensor],
  ['torch._utils._rebuild_parameter', rebuildParameter],
  ['torch._utils._rebuild_parameter_with_state', rebuildParameter],
  ['builtins.set', makeSet],
  ['builtins.frozenset', makeSet],
  ['builtins.bytes', makeBytes],
  ['builtins.bytearray', makeBytes],
  ['_codecs.encode', codecsEncode],
  ['numpy.dtype', numpyDType],
  ...NUMPY_CORE.map((m): [string, Call] => [`${m}.multiarray._reconstruct`, numpyReconstruct]),
  ...NUMPY_CORE.map((m): [string, Call] => [`${m}.numeric._frombuffer`, numpyFromBuffer]),
]);

/** NEWOBJ targets: allow-listed classes instantiated without running their code. */
const CLASSES = new Map<string, () => PickleValue>([
  ['argparse.Namespace', () => new PyObject('argparse.Namespace')],
  // A dict subclass: its items arrive through SETITEMS, its internal flags through BUILD (dropped).
  ['yacs.config.CfgNode', () => new Map()],
]);

/** Globals that may only appear as arguments (storage types in persistent ids, numpy.ndarray for _reconstruct). */
const MARKERS = new Set<string>(['numpy.ndarray', ...[...TORCH_STORAGES.keys()].map((s) => `torch.${s}`)]);

/** Element type of an allow-listed torch storage type (as named in a persistent id). */
export function torchStorageType(v: PickleValue): ElementType | undefined {
  return v instanceof PyGlobal && v.module === 'torch' ? TORCH_STORAGES.get(v.name) : undefined;
}

/** Python 2 module names that protocol-2 pickles still use. */
const PY2_MODULES: ReadonlyMap<string, string> = new Map([['__builtin__', 'builtins']]);

const utf8 = new TextDecoder('utf-8');

class Unpickler {
  private pos = 0;
  private readonly stack: PickleValue[] = [];
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PickleValue>();
  private tensorBytes = 0;
  private readonly maxTensorBytes: number;
  private readonly dv: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly opts: UnpickleOptions = {},
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.maxTensorBytes = opts.maxTensorBytes ?? 8 * bytes.length + (64 << 20);
  }

  // ---- input -------------------------------------------------------------

  private need(n: number, what: string): void {
    if (n > this.bytes.length - this.pos) fail(`${what} needs ${n} bytes at offset ${this.pos} but only ${this.bytes.length - this.pos} remain; the file is truncated or corrupt`);
  }
  private u8(): number {
    this.need(1, 'an opcode argument');
    return this.bytes[this.pos++]!;
  }
  private u16(): number {
    this.need(2, 'an opcode argument');
    const v = this.dv.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  private u32(): number {
    this.need(4, 'an opcode argument');
    const v = this.dv.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  private i32(): number {
    this.need(4, 'an opcode argument');
    const v = this.dv.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 length; must fit in what is left of the input (checked before anything is read or allocated). */
  private length64(what: string): number {
    this.need(8, what);
    const v = this.dv.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(this.bytes.length - this.pos)) fail(`${what} declares ${v} bytes but only ${this.bytes.length - this.pos} remain; the file is truncated or corrupt`);
    return Number(v);
  }
  private take(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  private line(): string {
    const rel = this.bytes.subarray(this.pos, this.pos + MAX_LINE + 1).indexOf(0x0a);
    if (rel < 0) fail('a GLOBAL name is unterminated or too long; the file is truncated or corrupt');
    const end = this.pos + rel;
    const s = utf8.decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }
  private long(n: number): number | bigint {
    if (n > MAX_LONG_BYTES) fail(`an integer of ${n} bytes is implausible in a checkpoint; the file is corrupt`);
    const b = this.take(n, 'an integer');
    if (n === 0) return 0;
    if (n <= 6) {
      let v = 0;
      for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!;
      return b[n - 1]! & 0x80 ? v - 2 ** (8 * n) : v;
    }
    let hex = '';
    for (let i = n - 1; i >= 0; i--) hex += b[i]!.toString(16).padStart(2, '0');
    let v = BigInt(`0x${hex}`);
    if (b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  // ---- stack -------------------------------------------------------------

  private push(v: PickleValue): void {
    if (this.stack.length >= MAX_STACK) fail(`the stack grew past ${MAX_STACK} entries; the file is corrupt or crafted`);
    this.stack.push(v);
  }
  private base(): number {
    return this.marks.length ? this.marks[this.marks.length - 1]! : 0;
  }
  private pop(): PickleValue {
    if (this.stack.length <= this.base()) fail('an opcode popped an empty stack; the file is corrupt');
    return this.stack.pop()!;
  }
  private top(): PickleValue {
    if (this.stack.length <= this.base()) fail('an opcode read an empty stack; the file is corrupt');
    return this.stack[this.stack.length - 1]!;
  }
  private popMark(): PickleValue[] {
    const mark = this.marks.pop();
    if (mark === undefined) fail('an opcode expected a MARK that is not there; the file is corrupt');
    return this.stack.splice(mark);
  }
  private memoGet(i: number): PickleValue {
    const v = this.memo.get(i);
    if (v === undefined) fail(`memo entry ${i} is read before it is written; the file is corrupt`);
    // An array finished by BUILD after it was memoised: hand out the finished array.
    return v instanceof PendingArray && v.built ? v.built : v;
  }
  private memoPut(i: number): void {
    if (this.memo.size >= MAX_ENTRIES && !this.memo.has(i)) fail(`the memo grew past ${MAX_ENTRIES} entries; the file is corrupt or crafted`);
    this.memo.set(i, this.top());
  }

  /** Adds to a set, capped like every container. */
  add(s: Set<PickleValue>, v: PickleValue): void {
    if (s.size >= MAX_ENTRIES) fail(`a set grew past ${MAX_ENTRIES} entries; the file is corrupt or crafted`);
    s.add(v);
  }
  private setItem(target: PickleValue, k: PickleValue, v: PickleValue): void {
    if (!(target instanceof Map)) fail(`SETITEM on a ${kindOf(target)}; the file is corrupt or not a plain weights file`);
    if (target.size >= MAX_ENTRIES) fail(`a dict grew past ${MAX_ENTRIES} entries; the file is corrupt or crafted`);
    target.set(k, v);
  }
  private append(target: PickleValue, items: PickleValue[]): void {
    if (!Array.isArray(target)) fail(`APPEND on a ${kindOf(target)}; the file is corrupt or not a plain weights file`);
    for (const item of items) target.push(item);
  }

  // ---- globals and calls ---------------------------------------------------

  private global(module: string, name: string): PyGlobal {
    const qualified = `${PY2_MODULES.get(module) ?? module}.${name}`;
    if (!CALLS.has(qualified) && !CLASSES.has(qualified) && !MARKERS.has(qualified)) {
      if (module === 'torch' && name.endsWith('Storage')) {
        fail(`tensors stored as torch.${name} are not supported (supported: ${[...TORCH_STORAGES.keys()].join(', ')}); convert them to float32 before saving`);
      }
      throw new FormatError(
        `pickle: refused to load the global '${module}.${name}': it is not on the allow-list of plain checkpoint types. ` +
          'The file may be malicious, or it is not a plain weights file (it may pickle a whole model or custom classes); ' +
          'in Python, load it in a sandbox and re-save only the tensors (e.g. as safetensors).',
      );
    }
    const dot = qualified.lastIndexOf('.');
    return new PyGlobal(qualified.slice(0, dot), qualified.slice(dot + 1));
  }

  private reduce(fn: PickleValue, args: PickleValue): PickleValue {
    if (!(fn instanceof PyGlobal)) fail(`REDUCE called a ${kindOf(fn)}; the file is corrupt`);
    const call = CALLS.get(fn.qualifiedName);
    if (!call) fail(`${fn.qualifiedName} cannot be called here; the file is corrupt or not a plain weights file`);
    if (!Array.isArray(args)) fail(`REDUCE arguments must be a tuple, got a ${kindOf(args)}`);
    return call(args, this);
  }

  private newObj(cls: PickleValue, args: PickleValue): PickleValue {
    const make = cls instanceof PyGlobal ? CLASSES.get(cls.qualifiedName) : undefined;
    if (!make) fail(`NEWOBJ on ${kindOf(cls)} is not supported; the file is corrupt or not a plain weights file`);
    if (!Array.isArray(args) || args.length !== 0) fail(`${kindOf(cls)} must be created without arguments`);
    return make();
  }

  private build(obj: PickleValue, state: PickleValue): PickleValue {
    if (obj instanceof PendingArray) {
      // ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata)); older numpy omits the version.
      if (!Array.isArray(state) || (state.length !== 5 && state.length !== 4)) fail('numpy array state must be a 4- or 5-tuple; the file is corrupt');
      const [shape, dtype, fortran, raw] = state.slice(state.length - 4);
      if (!(dtype instanceof NumpyDType) || typeof fortran !== 'boolean') fail('numpy array state has an unexpected dtype or order flag; the file is corrupt');
      if (!(raw instanceof Uint8Array)) fail(`numpy array data is a ${kindOf(raw!)}; only plain numeric arrays are supported`);
      obj.built = this.numpyArray(shape!, dtype, fortran, raw);
      return obj.built;
    }
    if (obj instanceof NumpyDType) {
      // (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
      if (!Array.isArray(state) || state.length < 5) fail('numpy dtype state must be a tuple of at least 5 items; the file is corrupt');
      const [, order, subarray, names, fields] = state;
      if (subarray !== null || names !== null || fields !== null) fail('structured or sub-array numpy dtypes are not supported; save plain numeric arrays');
      if (order !== '<' && order !== '>' && order !== '|' && order !== '=') fail(`numpy byte order ${describe(order!)} is invalid; the file is corrupt`);
      obj.littleEndian = order !== '>';
      return obj;
    }
    if (obj instanceof PyObject && obj.className === 'argparse.Namespace') {
      if (!(state instanceof Map)) fail('argparse.Namespace state must be a dict');
      for (const [k, v] of state) {
        if (typeof k !== 'string') fail('argparse.Namespace attribute names must be strings');
        obj.attrs.set(k, v);
      }
      return obj;
    }
    // OrderedDict attributes (e.g. a state dict's `_metadata`) and yacs CfgNode flags carry no weights: dropped.
    if (obj instanceof Map) return obj;
    fail(`BUILD on a ${kindOf(obj)} is not supported; the file is corrupt or not a plain weights file`);
  }

  // ---- tensors -------------------------------------------------------------

  /** Decodes a strided view of raw storage bytes into an NDArray, charging the tensor budget. */
  materialize(elem: ElementType, bytes: Uint8Array, littleEndian: boolean, offset: number, shape: number[], strides: number[], what: string): NDArray {
    const charge = (n: number): void => {
      this.tensorBytes += n;
      if (this.tensorBytes > this.maxTensorBytes) {
        fail(`${what}: the tensors would take more than ${this.maxTensorBytes} bytes, far more than this file holds; it is corrupt or crafted (raise maxTensorBytes if it is trusted)`);
      }
    };
    const data = decodeView(bytes, elem, littleEndian, { offset, shape, strides }, charge, what, this.opts);
    return new NDArray(irDType(elem, this.opts), shape, data);
  }

  /** A numpy array from its raw C- or Fortran-order bytes. */
  numpyArray(shape: PickleValue, dtype: NumpyDType, fortran: boolean, raw: Uint8Array): NDArray {
    if (!isIndexList(shape)) fail('numpy array shape must be a tuple of non-negative integers; the file is corrupt');
    const size = ITEM_SIZE[dtype.elementType];
    const n = shape.reduce((a, b) => a * b, 1);
    if (n * size !== raw.length) fail(`numpy array of shape ${fmtShape(shape)} (${dtype.elementType}) needs ${n * size} bytes but has ${raw.length}; the file is corrupt`);
    // Fortran order is C order of the reversed shape: read it through reversed strides.
    const strides = fortran ? stridesOf([...shape].reverse()).reverse() : stridesOf(shape);
    return this.materialize(dtype.elementType, raw, dtype.littleEndian, 0, shape, strides, 'numpy array');
  }

  // ---- the machine ---------------------------------------------------------

  load(): PickleValue {
    const b = this.bytes;
    while (this.pos < b.length) {
      const op = b[this.pos++]!;
      switch (op) {
        case 0x80: {
          // PROTO
          const v = this.u8();
          if (v > 5) fail(`pickle protocol ${v} is not supported (2–5 are)`);
          break;
        }
        case 0x95: // FRAME: a buffering hint; its length only has to be plausible.
          this.length64('a frame');
          break;
        case 0x2e: {
          // STOP
          if (this.marks.length || this.stack.length !== 1) fail('the pickle ended with a malformed stack; the file is corrupt');
          return this.stack[0]!;
        }
        case 0x28: // MARK
          if (this.marks.length >= MAX_MARKS) fail(`nesting deeper than ${MAX_MARKS} levels; the file is corrupt or crafted`);
          this.marks.push(this.stack.length);
          break;
        case 0x30: // POP
          if (this.stack.length > this.base()) this.stack.pop();
          else this.popMark();
          break;
        case 0x31: // POP_MARK
          this.popMark();
          break;
        case 0x32: // DUP
          this.push(this.top());
          break;

        case 0x4e: // NONE
          this.push(null);
          break;
        case 0x88: // NEWTRUE
          this.push(true);
          break;
        case 0x89: // NEWFALSE
          this.push(false);
          break;
        case 0x4a: // BININT
          this.push(this.i32());
          break;
        case 0x4b: // BININT1
          this.push(this.u8());
          break;
        case 0x4d: // BININT2
          this.push(this.u16());
          break;
        case 0x8a: // LONG1
          this.push(this.long(this.u8()));
          break;
        case 0x8b: // LONG4
          this.push(this.long(this.u32()));
          break;
        case 0x47: {
          // BINFLOAT: big-endian double
          this.need(8, 'a float');
          this.push(this.dv.getFloat64(this.pos, false));
          this.pos += 8;
          break;
        }
        case 0x8c: // SHORT_BINUNICODE
          this.push(utf8.decode(this.take(this.u8(), 'a string')));
          break;
        case 0x58: // BINUNICODE
          this.push(utf8.decode(this.take(this.u32(), 'a string')));
          break;
        case 0x8d: // BINUNICODE8
          this.push(utf8.decode(this.take(this.length64('a string'), 'a string')));
          break;
        case 0x43: // SHORT_BINBYTES
          this.push(this.take(this.u8(), 'bytes'));
          break;
        case 0x42: // BINBYTES
          this.push(this.take(this.u32(), 'bytes'));
          break;
        case 0x8e: // BINBYTES8
        case 0x96: // BYTEARRAY8
          this.push(this.take(this.length64('bytes'), 'bytes'));
          break;

        case 0x5d: // EMPTY_LIST
          this.push([]);
          break;
        case 0x29: // EMPTY_TUPLE
          this.push([]);
          break;
        case 0x7d: // EMPTY_DICT
          this.push(new Map());
          break;
        case 0x8f: // EMPTY_SET
          this.push(new Set());
          break;
        case 0x85: // TUPLE1
          this.push([this.pop()]);
          break;
        case 0x86: {
          // TUPLE2
          const b2 = this.pop();
          this.push([this.pop(), b2]);
          break;
        }
        case 0x87: {
          // TUPLE3
          const c3 = this.pop();
          const b3 = this.pop();
          this.push([this.pop(), b3, c3]);
          break;
        }
        case 0x74: // TUPLE
        case 0x6c: // LIST
          this.push(this.popMark());
          break;
        case 0x91: {
          // FROZENSET
          const s = new Set<PickleValue>();
          for (const item of this.popMark()) this.add(s, item);
          this.push(s);
          break;
        }
        case 0x64: {
          // DICT
          const items = this.popMark();
          if (items.length % 2) fail('DICT with an odd number of items; the file is corrupt');
          const d = new Map<PickleValue, PickleValue>();
          for (let i = 0; i < items.length; i += 2) this.setItem(d, items[i]!, items[i + 1]!);
          this.push(d);
          break;
        }
        case 0x61: {
          // APPEND
          const v = this.pop();
          this.append(this.top(), [v]);
          break;
        }
        case 0x65: {
          // APPENDS
          const items = this.popMark();
          this.append(this.top(), items);
          break;
        }
        case 0x73: {
          // SETITEM
          const v = this.pop();
          const k = this.pop();
          this.setItem(this.top(), k, v);
          break;
        }
        case 0x75: {
          // SETITEMS
          const items = this.popMark();
          if (items.length % 2) fail('SETITEMS with an odd number of items; the file is corrupt');
          const target = this.top();
          for (let i = 0; i < items.length; i += 2) this.setItem(target, items[i]!, items[i + 1]!);
          break;
        }
        case 0x90: {
          // ADDITEMS
          const items = this.popMark();
          const target = this.top();
          if (!(target instanceof Set)) fail(`ADDITEMS on a ${kindOf(target)}; the file is corrupt`);
          for (const item of items) this.add(target, item);
          break;
        }

        case 0x68: // BINGET
          this.push(this.memoGet(this.u8()));
          break;
        case 0x6a: // LONG_BINGET
          this.push(this.memoGet(this.u32()));
          break;
        case 0x71: // BINPUT
          this.memoPut(this.u8());
          break;
        case 0x72: // LONG_BINPUT
          this.memoPut(this.u32());
          break;
        case 0x94: // MEMOIZE
          this.memoPut(this.memo.size);
          break;

        case 0x63: {
          // GLOBAL: "module\nname\n"
          const module = this.line();
          this.push(this.global(module, this.line()));
          break;
        }
        case 0x93: {
          // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings; the file is corrupt');
          this.push(this.global(module, name));
          break;
        }
        case 0x52: {
          // REDUCE
          const args = this.pop();
          this.push(this.reduce(this.pop(), args));
          break;
        }
        case 0x81: {
          // NEWOBJ
          const args = this.pop();
          this.push(this.newObj(this.pop(), args));
          break;
        }
        case 0x92: {
          // NEWOBJ_EX
          const kwargs = this.pop();
          const args = this.pop();
          if (!(kwargs instanceof Map) || kwargs.size) fail('NEWOBJ_EX with keyword arguments is not supported');
          this.push(this.newObj(this.pop(), args));
          break;
        }
        case 0x62: {
          // BUILD
          const state = this.pop();
          this.push(this.build(this.pop(), state));
          break;
        }
        case 0x51: {
          // BINPERSID
          const pid = this.pop();
          if (!this.opts.persistentLoad) fail('the pickle refers to external data (a persistent id) that this file format cannot provide; the file is corrupt or of another format');
          this.push(this.opts.persistentLoad(pid));
          break;
        }

        default:
          fail(
            `unsupported opcode 0x${op.toString(16).padStart(2, '0')} at offset ${this.pos - 1}: ` +
              'the file is corrupt, uses pickle protocol 0/1 or out-of-band buffers, or is not a pickle; re-save it with protocol 2–5',
          );
      }
    }
    fail('the pickle ended before its STOP opcode; the file is truncated');
  }
}

/** Unpickles `bytes` into inert JS values (see the module comment for the mapping). */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): PickleValue {
  return new Unpickler(bytes, opts).load();
}
