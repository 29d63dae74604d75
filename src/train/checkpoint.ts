/**
 * Training checkpoints: one safetensors file, written atomically (temp
 * file, fsync, rename: a crash never leaves a half checkpoint under the
 * final name), holding everything an exact resume needs:
 *
 *   model.<key>   the model's state dict (parameters and BatchNorm buffers)
 *   optim.<key>   optimizer state (momentum buffers, Adam moments)
 *   ema.<key>     the EMA weights, when the run keeps an EMA
 *   __metadata__  "volution.train_state": JSON of TrainState (the run's config, epoch,
 *                 position in the epoch, step count, the dropout/drop-path generator's
 *                 state, the partial epoch's running sums); "volution.config": the
 *                 model's identity, as in a model directory's weights file
 *
 * Batch order and augmentation are functions of (seed, epoch, batch), so
 * the position in the epoch is the data pipeline's whole state.
 */
import { FormatError } from '../errors.js';
import { loadSafetensorsFile, saveSafetensorsFile } from '../io/safetensors.js';
import type { NDArray } from '../ir/ndarray.js';

export const TRAIN_STATE_KEY = 'volution.train_state';
export const CHECKPOINT_FILE = 'checkpoint.safetensors';

/** Running sums of the epoch in progress (restored on a mid-epoch resume). */
export interface EpochSums {
  batches: number;
  samples: number;
  lossSum: number;
  correct: number;
  dataMs: number;
  dataWaitMs: number;
  stepMs: number;
  wallMs: number;
}

export function emptyEpochSums(): EpochSums {
  return { batches: 0, samples: 0, lossSum: 0, correct: 0, dataMs: 0, dataWaitMs: 0, stepMs: 0, wallMs: 0 };
}

export interface TrainState<C = unknown> {
  format: 1;
  /** The run's full configuration (what `--resume` rebuilds from). */
  config: C;
  /** 0-based epoch in progress (== epochs done when `batch` is 0). */
  epoch: number;
  /** Batches of `epoch` already taken. */
  batch: number;
  /** Optimizer steps taken. */
  step: number;
  /** State of the dropout / drop-path noise generator (Rng.state). */
  noiseRng: number[];
  emaUpdates?: number;
  sums: EpochSums;
  best?: { top1: number; epoch: number };
  /** Seconds of training so far (for the report). */
  elapsed: number;
}

export interface Checkpoint<C = unknown> {
  state: TrainState<C>;
  model: Map<string, NDArray>;
  optim: Map<string, NDArray>;
  ema?: Map<string, NDArray>;
}

export async function saveCheckpoint<C>(path: string, ckpt: Checkpoint<C>, metadata: Record<string, string> = {}): Promise<void> {
  const tensors = new Map<string, NDArray>();
  for (const [k, v] of ckpt.model) tensors.set(`model.${k}`, v);
  for (const [k, v] of ckpt.optim) tensors.set(`optim.${k}`, v);
  for (const [k, v] of ckpt.ema ?? []) tensors.set(`ema.${k}`, v);
  await saveSafetensorsFile(path, tensors, { ...metadata, [TRAIN_STATE_KEY]: JSON.stringify(ckpt.state) });
}

/** Whether a safetensors file's metadata marks it as a training checkpoint. */
export function isTrainCheckpoint(metadata: Readonly<Record<string, string>>): boolean {
  return TRAIN_STATE_KEY in metadata;
}

export async function loadCheckpoint<C>(path: string): Promise<Checkpoint<C>> {
  const { tensors, metadata } = await loadSafetensorsFile(path);
  const text = metadata[TRAIN_STATE_KEY];
  if (text === undefined) throw new FormatError(`'${path}' is not a volution training checkpoint (no '${TRAIN_STATE_KEY}' metadata); --resume takes the checkpoint.safetensors of a run directory`);
  let state: TrainState<C>;
  try {
    state = JSON.parse(text) as TrainState<C>;
  } catch (err) {
    throw new FormatError(`'${path}': the training state does not parse: ${(err as Error).message}`);
  }
  if (state.format !== 1) throw new FormatError(`'${path}': unsupported checkpoint format ${String(state.format)}`);
  return { state, ...splitCheckpointTensors(tensors) };
}

/** The model / optimizer / EMA parts of a checkpoint's tensors. */
export function splitCheckpointTensors(tensors: ReadonlyMap<string, NDArray>): Omit<Checkpoint, 'state'> {
  const model = new Map<string, NDArray>();
  const optim = new Map<string, NDArray>();
  const ema = new Map<string, NDArray>();
  for (const [k, v] of tensors) {
    const dot = k.indexOf('.');
    const part = k.slice(0, dot);
    const rest = k.slice(dot + 1);
    if (part === 'model') model.set(rest, v);
    else if (part === 'optim') optim.set(rest, v);
    else if (part === 'ema') ema.set(rest, v);
  }
  return { model, optim, ...(ema.size ? { ema } : {}) };
}
