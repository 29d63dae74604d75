/**
 * Checkpoint I/O: safetensors, zip-format PyTorch checkpoints and
 * PaddlePaddle `.pdparams`, all read without executing anything.
 */
import { readFile } from 'node:fs/promises';
import { FormatError } from '../errors.js';
import type { NDArray } from '../ir/ndarray.js';
import { readPdparams } from './paddle.js';
import { readSafetensors } from './safetensors.js';
import { extractStateDict, isLegacyTorch, readTorchCheckpoint } from './torch.js';
import type { ExtractOptions, TorchLoadOptions } from './torch.js';

export type { DecodeOptions, ElementType } from './elements.js';
export { openZip } from './zip.js';
export type { ZipArchive, ZipOptions } from './zip.js';
export { PyGlobal, PyObject, TorchStorage, kindOf, unpickle } from './pickle.js';
export type { PickleValue, UnpickleOptions } from './pickle.js';
export { loadSafetensorsFile, readSafetensors, saveSafetensorsFile, writeSafetensors } from './safetensors.js';
export type { ReadSafetensorsOptions, Safetensors } from './safetensors.js';
export { extractStateDict, isLegacyTorch, loadTorchCheckpoint, readTorchCheckpoint } from './torch.js';
export type { ExtractOptions, StateDict, TorchLoadOptions } from './torch.js';
export { loadPdparams, readPdparams } from './paddle.js';
export type { Pdparams } from './paddle.js';

export type CheckpointFormat = 'safetensors' | 'torch' | 'pdparams';

export interface CheckpointFile {
  format: CheckpointFormat;
  tensors: Map<string, NDArray>;
  /**
   * safetensors: its `__metadata__`. torch: `state_dict_key` (where the
   * tensors were found, '' for a bare state dict) and `stripped_prefix`
   * ('module.' or ''). pdparams: empty.
   */
  metadata: Record<string, string>;
  /** Non-tensor entries that were left out, as `name: kind`. */
  skipped: string[];
}

/** `keepFloat64` applies to every format; `maxTensorBytes` and `key` to torch checkpoints. */
export type LoadCheckpointOptions = TorchLoadOptions & ExtractOptions;

/**
 * Identifies a checkpoint by its content: a safetensors header, a zip
 * archive (torch ≥ 1.6), the legacy torch pickle stream, or a bare pickle
 * (`.pdparams`). Returns undefined for anything else.
 */
export function detectCheckpointFormat(bytes: Uint8Array): CheckpointFormat | 'torch-legacy' | undefined {
  if (bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04) return 'torch';
  if (isLegacyTorch(bytes)) return 'torch-legacy';
  if (bytes.length >= 9 && bytes[8] === 0x7b) {
    const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    // Checked before the pickle test: a header length like 0x280 also starts with 0x80 0x02. A real
    // pickle fails this test, as its opcodes in bytes 2–7 make the u64 far larger than the file.
    if (n <= BigInt(bytes.length - 8)) return 'safetensors';
  }
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! >= 2 && bytes[1]! <= 5) return 'pdparams';
  return undefined;
}

/** Reads a checkpoint held in memory, whatever its format (see `detectCheckpointFormat`). */
export function readCheckpoint(bytes: Uint8Array, opts: LoadCheckpointOptions = {}): CheckpointFile {
  const format = detectCheckpointFormat(bytes);
  switch (format) {
    case 'safetensors': {
      const { tensors, metadata } = readSafetensors(bytes, opts);
      return { format, tensors, metadata, skipped: [] };
    }
    case 'torch':
    case 'torch-legacy': {
      // readTorchCheckpoint explains how to convert a legacy file.
      const sd = extractStateDict(readTorchCheckpoint(bytes, opts), opts);
      return {
        format: 'torch',
        tensors: sd.tensors,
        metadata: { state_dict_key: sd.source ?? '', stripped_prefix: sd.strippedModulePrefix ? 'module.' : '' },
        skipped: sd.skipped,
      };
    }
    case 'pdparams': {
      const { tensors, skipped } = readPdparams(bytes, opts);
      return { format, tensors, metadata: {}, skipped };
    }
    case undefined: {
      const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
      throw new FormatError(
        `unrecognised checkpoint format (first bytes: ${head || 'none'}); expected safetensors, a torch.save zip archive, or a pickled .pdparams file`,
      );
    }
  }
}

/** Reads a checkpoint file, sniffing its format from the content rather than the extension. */
export async function loadCheckpointFile(path: string, opts: LoadCheckpointOptions = {}): Promise<CheckpointFile> {
  const buf = await readFile(path);
  // A plain Uint8Array view: bytes values in the result should not be Buffers.
  return readCheckpoint(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), opts);
}
