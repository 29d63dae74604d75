/**
 * PyTorch checkpoints: the zip format written by `torch.save` since torch 1.6
 * (`<folder>/data.pkl` plus one `<folder>/data/<key>` entry per storage), and
 * unwrapping the state dict out of a training checkpoint.
 */
import { FormatError, StateDictError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { ITEM_SIZE } from './elements.js';
import type { DecodeOptions } from './elements.js';
import { TorchStorage, kindOf, torchStorageType, unpickle } from './pickle.js';
import type { PickleValue } from './pickle.js';
import { openZip } from './zip.js';

export interface TorchLoadOptions extends DecodeOptions {
  /** Budget for the bytes of all materialised tensors (default 8 × file size + 64 MiB). */
  maxTensorBytes?: number;
}

export interface ExtractOptions {
  /**
   * Take the state dict from this top-level key (e.g. `'model_ema'`) instead
   * of the default search: `'model'`, then `'state_dict'`, then the object itself.
   */
  key?: string;
}

export interface StateDict {
  /** Tensors by name, a common `module.` prefix removed. */
  tensors: Map<string, NDArray>;
  /** The top-level key the tensors came from, or null when the checkpoint is a bare state dict. */
  source: string | null;
  /** True when every key carried a `module.` prefix (a DataParallel/DDP save) and it was removed. */
  strippedModulePrefix: boolean;
  /** Entries that were not tensors and were left out, as `name: kind`. */
  skipped: string[];
}

/** `torch.save`'s legacy format opens with this magic number pickled as a LONG1 (0x1950a86a20f9469cfc6c). */
const LEGACY_MAGIC = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/** True for a pre-1.6 (non-zip) `torch.save` file: a pickle stream starting with torch's magic number. */
export function isLegacyTorch(bytes: Uint8Array): boolean {
  if (bytes[0] !== 0x80) return false;
  // The magic follows the PROTO opcode, after a FRAME header on protocol ≥ 4.
  const at = bytes[2] === 0x95 ? 11 : 2;
  return LEGACY_MAGIC.every((b, i) => bytes[at + i] === b);
}

function fail(what: string): never {
  throw new FormatError(`torch checkpoint: ${what}`);
}

/**
 * Unpickles a zip-format `torch.save` file into inert JS values (see
 * `unpickle` for the mapping); tensors become dense `NDArray`s, with storage
 * offsets, strides and shared storages resolved.
 */
export function readTorchCheckpoint(bytes: Uint8Array, opts: TorchLoadOptions = {}): PickleValue {
  if (isLegacyTorch(bytes)) {
    fail(
      'this is the legacy (pre-1.6, non-zip) torch.save format, which is not supported. Convert it once with torch ≥ 1.6: ' +
        "`torch.save(torch.load('in.pth', map_location='cpu'), 'out.pth')` (trusted files only), or export the state dict as safetensors.",
    );
  }
  const zip = openZip(bytes);
  const names = new Set(zip.names());
  const pickles = [...names].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    fail(
      pickles.length === 0
        ? 'the archive has no <folder>/data.pkl, so it is not a torch.save checkpoint (a TorchScript archive or another zip?); save the state dict with torch.save'
        : `the archive has several data.pkl files (${pickles.join(', ')}); it is corrupt or not a single checkpoint`,
    );
  }
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  if (names.has(`${prefix}byteorder`)) {
    const order = new TextDecoder().decode(zip.read(`${prefix}byteorder`));
    if (order !== 'little') fail(`the tensors are stored ${order}-endian; only little-endian checkpoints are supported: re-save it on a little-endian machine`);
  }

  const storages = new Map<string, TorchStorage>();
  // torch pickles each storage as the persistent id ('storage', storage_type, key, location, numel).
  const persistentLoad = (pid: PickleValue): PickleValue => {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') fail('a persistent id is not a storage reference; the file is corrupt');
    const [, type, key, , numel] = pid;
    const elem = torchStorageType(type!);
    if (elem === undefined) fail(`unsupported storage type ${kindOf(type!)}; only real, bool and integer storages are supported`);
    if (typeof key !== 'string' || typeof numel !== 'number' || !Number.isSafeInteger(numel) || numel < 0) fail('a storage reference has a bad key or size; the file is corrupt');
    const cached = storages.get(key);
    if (cached) {
      if (cached.elementType !== elem) fail(`storage '${key}' is used as both ${cached.elementType} and ${elem}; the file is corrupt`);
      return cached;
    }
    const entry = `${prefix}data/${key}`;
    if (!names.has(entry)) fail(`storage '${key}' is missing (no entry '${entry}'); the file is truncated or corrupt`);
    const data = zip.read(entry);
    if (data.length !== numel * ITEM_SIZE[elem]) fail(`storage '${key}' should hold ${numel} ${elem} elements (${numel * ITEM_SIZE[elem]} bytes) but has ${data.length} bytes; the file is corrupt`);
    const storage = new TorchStorage(elem, data);
    storages.set(key, storage);
    return storage;
  };
  return unpickle(zip.read(`${prefix}data.pkl`), {
    ...opts,
    persistentLoad,
    maxTensorBytes: opts.maxTensorBytes ?? 8 * bytes.length + (64 << 20),
  });
}

function topKeys(obj: Map<PickleValue, PickleValue>): string {
  const keys = [...obj.keys()].map((k) => (typeof k === 'string' ? `'${k}'` : kindOf(k)));
  return keys.length > 20 ? `${keys.slice(0, 20).join(', ')}, … (${keys.length} in all)` : keys.join(', ') || '(none)';
}

/**
 * Finds the state dict in an unpickled checkpoint: the explicit `key`, else a
 * mapping under `'model'`, else under `'state_dict'`, else the object itself.
 * Keeps the tensor entries, strips a `module.` prefix that every key carries,
 * and reports the non-tensor entries in `skipped` rather than keeping them.
 */
export function extractStateDict(obj: PickleValue, opts: ExtractOptions = {}): StateDict {
  if (!(obj instanceof Map)) throw new StateDictError(`the checkpoint holds a ${kindOf(obj)}, not a mapping of names to tensors`);
  let source: string | null = null;
  if (opts.key !== undefined) {
    if (!(obj.get(opts.key) instanceof Map)) throw new StateDictError(`the checkpoint has no mapping under '${opts.key}'; its top-level keys are ${topKeys(obj)}`);
    source = opts.key;
  } else if (obj.get('model') instanceof Map) source = 'model';
  else if (obj.get('state_dict') instanceof Map) source = 'state_dict';
  const dict = (source === null ? obj : obj.get(source)) as Map<PickleValue, PickleValue>;

  const found = new Map<string, NDArray>();
  const skipped: string[] = [];
  for (const [k, v] of dict) {
    if (typeof k === 'string' && v instanceof NDArray) found.set(k, v);
    else skipped.push(`${typeof k === 'string' ? k : `<${kindOf(k)} key>`}: ${kindOf(v)}`);
  }
  if (found.size === 0) {
    throw new StateDictError(`no tensors found in ${source === null ? 'the checkpoint' : `'${source}'`}; its keys are ${topKeys(dict)}. Pass { key } to pick the entry holding the weights`);
  }
  const prefix = 'module.';
  const strip = [...found.keys()].every((k) => k.startsWith(prefix));
  const tensors = strip ? new Map([...found].map(([k, v]) => [k.slice(prefix.length), v])) : found;
  return { tensors, source, strippedModulePrefix: strip, skipped };
}

/** Loads the state dict of a zip-format torch checkpoint (see `extractStateDict`). */
export function loadTorchCheckpoint(bytes: Uint8Array, opts: TorchLoadOptions & ExtractOptions = {}): Map<string, NDArray> {
  return extractStateDict(readTorchCheckpoint(bytes, opts), opts).tensors;
}
