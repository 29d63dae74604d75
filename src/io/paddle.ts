/**
 * PaddlePaddle `.pdparams`: a pickle of `{parameter_name: numpy.ndarray}`
 * written by `paddle.save`. Names and layouts are returned as stored; the
 * model families rename keys and transpose Linear weights themselves.
 */
import { FormatError, StateDictError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import type { DecodeOptions } from './elements.js';
import { kindOf, unpickle } from './pickle.js';

/** Bookkeeping entry paddle.save adds (structured name → parameter name); it holds no weights. */
const NAME_TABLE = 'StructuredToParameterName@@';
/** Present when paddle split parameters over 4 GB to fit pickle protocol < 4. */
const SPLIT_PARAMS = 'UnpackBigParamInfor@@';

export interface Pdparams {
  tensors: Map<string, NDArray>;
  /** Entries that were not arrays and were left out, as `name: kind`. */
  skipped: string[];
}

/** Reads a `.pdparams` buffer, reporting non-array entries in `skipped`. */
export function readPdparams(bytes: Uint8Array, opts: DecodeOptions = {}): Pdparams {
  const obj = unpickle(bytes, opts);
  if (!(obj instanceof Map)) throw new FormatError(`pdparams: the file holds a ${kindOf(obj)}, not a {name: array} mapping; it is not a paddle.save parameter file`);
  if (obj.has(SPLIT_PARAMS)) {
    throw new FormatError(`pdparams: the file splits parameters over 4 GB into slices ('${SPLIT_PARAMS}'), which is not supported; re-save it with paddle.save(..., protocol=4)`);
  }
  const tensors = new Map<string, NDArray>();
  const skipped: string[] = [];
  for (const [k, v] of obj) {
    if (k === NAME_TABLE) continue;
    if (typeof k === 'string' && v instanceof NDArray) tensors.set(k, v);
    else skipped.push(`${typeof k === 'string' ? k : `<${kindOf(k)} key>`}: ${kindOf(v)}`);
  }
  if (tensors.size === 0) {
    const listed = skipped.length > 20 ? `${skipped.slice(0, 20).join(', ')}, …` : skipped.join(', ');
    throw new StateDictError(`pdparams: no arrays found in the file (entries: ${listed || 'none'})`);
  }
  return { tensors, skipped };
}

/** The `{name: array}` map of a `.pdparams` buffer (non-array entries dropped; see `readPdparams`). */
export function loadPdparams(bytes: Uint8Array, opts: DecodeOptions = {}): Map<string, NDArray> {
  return readPdparams(bytes, opts).tensors;
}
