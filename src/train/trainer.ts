/**
 * The training loop: builds the model (optionally from weights, with a new
 * classifier head), the data loaders, the compiled train step, the EMA and
 * the schedule; then trains epoch by epoch with evaluation after each, the
 * metrics log, the HTML report and an atomic checkpoint per epoch.
 *
 * Exact resume: everything a step depends on is either in the checkpoint
 * (weights, BatchNorm statistics, optimizer state, EMA, step count, the
 * noise generator's state) or a pure function of (seed, epoch, batch) (the
 * batch order and augmentation). So a run stopped after any step and
 * resumed takes the same steps, with the same losses, as one that never
 * stopped.
 *
 * Stops: a NaN/Inf loss ends the run ('diverged') with the step named, and
 * leaves the last checkpoint as it was; an abort signal (Ctrl-C) saves a
 * checkpoint after the current graph run (up to `stepsPerRun` steps) and ends
 * the run ('interrupted').
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { compile } from '../backends/compile.js';
import { ConfigError, NonFiniteError, StateDictError } from '../errors.js';
import { loadSafetensorsFile } from '../io/safetensors.js';
import { CONFIG_FILE, WEIGHTS_FILE, effectivePretrained, loadWeights, readModelConfig, saveModel, writeFileAtomic } from '../io/model_dir.js';
import type { NDArray } from '../ir/ndarray.js';
import { type ClassifierModel, type PretrainedConfig, createModel, resolveConfig } from '../models/registry.js';
import { Rng } from '../rng.js';
import type { MixupSpec, TransformSpec, Triple } from './augment.js';
import { CHECKPOINT_FILE, type Checkpoint, type EpochSums, type TrainState, emptyEpochSums, isTrainCheckpoint, loadCheckpoint, saveCheckpoint, splitCheckpointTensors } from './checkpoint.js';
import { type DataSpec, formatDataSpec, parseDataSpec } from './data.js';
import { ModelEma } from './ema.js';
import { type Batch, Loader, type LoaderSpec, mixSeed } from './loader.js';
import { crossEntropy } from './losses.js';
import { type EpochMetrics, MetricsLog, type MetricsRecord, type Tally, emptyTally, tally } from './metrics.js';
import { AdamW, type Optimizer, SGD, paramGroups } from './optim.js';
import { renderReport } from './report.js';
import { type ScheduleKind, makeSchedule } from './schedule.js';
import { TrainStep } from './step.js';

/** A training run's configuration: plain JSON, stored in checkpoints and the report. */
export interface TrainConfig {
  /** Variant or family name; may be omitted when `init` is a model directory. */
  model?: string;
  /** Config overrides, the official constructor's snake_case options. */
  modelConfig: Record<string, unknown>;
  /** Weights to start from: a checkpoint file, a model directory or a training checkpoint. */
  init?: string;
  /** Entry of a PyTorch training checkpoint holding the weights (e.g. 'model_ema'). */
  initKey?: string;
  /** Classes of the new head (default: the data set's). */
  numClasses?: number;
  /** The data set, as `--data` names it (data.ts). */
  data: string;
  /** Input side (default: the data set's native size, else the model's img_size). */
  imgSize?: number;
  epochs: number;
  batchSize: number;
  evalBatchSize?: number;
  opt: 'adamw' | 'sgd';
  lr: number;
  weightDecay: number;
  momentum: number;
  nesterov: boolean;
  betas: [number, number];
  eps: number;
  /** Global gradient-norm clip; off when undefined. */
  clipGrad?: number;
  sched: ScheduleKind;
  warmupEpochs: number;
  warmupLr: number;
  minLr: number;
  decayEpochs: number;
  decayRate: number;
  smoothing: number;
  mixup: number;
  cutmix: number;
  mixupProb: number;
  mixupSwitchProb: number;
  /** RandomResizedCrop area range; null: no random crop. */
  cropScale: [number, number] | null;
  cropRatio: [number, number];
  hflip: number;
  interpolation: 'bilinear' | 'bicubic';
  /** Normalisation (default: the model's pretrained config, ImageNet's). */
  mean?: Triple;
  std?: Triple;
  /** Stochastic depth: the drop_path_rate of the model's config (linear over blocks), when set. */
  dropPath?: number;
  /** Dropout: the drop_rate of the model's config, when set. */
  drop?: number;
  ema: boolean;
  emaDecay: number;
  emaWarmup: boolean;
  seed: number;
  threads: number;
  /**
   * Train steps per ONNX Runtime run (an ONNX Loop over the one-step graph,
   * one session for any number): 4 copies the weights and the optimizer
   * state out of ONNX Runtime once per four steps; 1 takes about 20% less
   * memory. An epoch's last run takes the steps that are left.
   */
  stepsPerRun: number;
  /** Prepare batches in a worker thread. */
  workers: boolean;
  /** Write a step record to metrics.jsonl every this many steps. */
  logEvery: number;
  /** Use only the first N samples of each split (quick runs, tests). */
  limitTrain?: number;
  limitVal?: number;
  /** The run directory (metrics.jsonl, report.html, checkpoint.safetensors, model/). */
  out: string;
}

/** Defaults: the DeiT / UniFormer recipe's choices, scaled to short runs where they must be. */
export const TRAIN_DEFAULTS: Omit<TrainConfig, 'data' | 'out'> = {
  modelConfig: {},
  epochs: 10,
  batchSize: 64,
  opt: 'adamw',
  lr: 1e-3,
  weightDecay: 0.05,
  momentum: 0.9,
  nesterov: false,
  betas: [0.9, 0.999],
  eps: 1e-8,
  sched: 'cosine',
  warmupEpochs: 1,
  warmupLr: 1e-6,
  minLr: 1e-5,
  decayEpochs: 30,
  decayRate: 0.1,
  smoothing: 0.1,
  mixup: 0,
  cutmix: 0,
  mixupProb: 1,
  mixupSwitchProb: 0.5,
  cropScale: [0.08, 1],
  cropRatio: [3 / 4, 4 / 3],
  hflip: 0.5,
  interpolation: 'bicubic',
  ema: false,
  emaDecay: 0.9998,
  emaWarmup: true,
  seed: 0,
  threads: 2,
  stepsPerRun: 4,
  workers: true,
  logEvery: 10,
};

export interface RunInfo {
  runDir: string;
  model: string;
  /** The live model being trained (its parameters change after every step). */
  module: ClassifierModel;
  params: number;
  numClasses: number;
  imgSize: number;
  train: string;
  val: string;
  stepsPerEpoch: number;
  /** Epochs of the run (the checkpoint's, when resuming). */
  epochs: number;
  valBatches: number;
  loader: string;
  resumedFrom?: { path: string; epoch: number; batch: number; step: number };
  /** Messages worth showing (new head, loader fallback, …). */
  notes: string[];
}

export interface StepProgress {
  /** 0-based epoch. */
  epoch: number;
  epochs: number;
  /** Batches of this epoch done (1-based after the step). */
  batch: number;
  batches: number;
  step: number;
  loss: number;
  /** Running averages over the epoch so far. */
  lossAvg: number;
  accAvg: number;
  lr: number;
  gradNorm: number;
  imagesPerS: number;
  /** Estimated seconds to the end of the run (training and evaluation). */
  etaS: number;
}

export interface EpochRecord extends EpochMetrics {
  /** Epochs done (1-based). */
  epoch: number;
  step: number;
  best: { top1: number; epoch: number };
}

export interface TrainHooks {
  onStart?(info: RunInfo): void;
  onStep?(p: StepProgress): void;
  onEpoch?(e: EpochRecord): void;
  /** Evaluation progress (batches done, of total). */
  onEval?(done: number, total: number, ema: boolean): void;
  onLog?(message: string): void;
}

export interface TrainOptions {
  /** A checkpoint to continue from (its run's config is used; `threads`, `workers` and `stepsPerRun` may change). */
  resume?: string;
  hooks?: TrainHooks;
  /** Aborting saves a checkpoint after the current graph run and returns 'interrupted'. */
  signal?: AbortSignal;
  /** Shown in the report, e.g. 'onnxruntime-node 1.30.0 (cpu), 2 threads'. */
  backend?: string;
}

export type TrainStatus = 'completed' | 'interrupted' | 'diverged';

export interface TrainResult {
  status: TrainStatus;
  runDir: string;
  /** Per-step training losses of the steps this call took, in order. */
  losses: number[];
  epochs: EpochRecord[];
  message: string;
  checkpoint?: string;
  modelDir?: string;
  emaModelDir?: string;
}

const NOISE_STREAM = 0x0015e;

// ------------------------------------------------------------------ model

export interface BuiltModel {
  model: ClassifierModel;
  name: string;
  notes: string[];
}

/** Whether a path is a model directory (config.json + model.safetensors). */
function isModelDir(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory() && existsSync(join(p, CONFIG_FILE));
}

/**
 * Builds the model a run trains: the named variant/family with overrides,
 * the data set's class count, the input size and the drop rates; then, with
 * `init`, loads the weights. Tensors of the classifier (whose first
 * dimension is the class count) may differ in shape or be absent: they keep
 * their fresh initialisation (fine-tuning with a new head). Anything else
 * that does not fit is an error.
 */
export async function buildModel(cfg: Pick<TrainConfig, 'model' | 'modelConfig' | 'init' | 'initKey' | 'dropPath' | 'drop' | 'seed'>, numClasses: number, imgSize: number | undefined): Promise<BuiltModel> {
  const notes: string[] = [];
  let name = cfg.model;
  let base: Record<string, unknown> = {};
  if (cfg.init !== undefined && isModelDir(cfg.init)) {
    const record = await readModelConfig(cfg.init);
    if (name === undefined || name === record.architecture || name === record.family) {
      name ??= record.architecture;
      base = { ...record.config };
    }
  }
  if (name === undefined) throw new ConfigError('name the model to train (--model <variant or family>), or start from a model directory (--init <dir>)');
  const { family, config } = resolveConfig(name);
  const known = config as Record<string, unknown>;
  const over: Record<string, unknown> = { ...base, ...cfg.modelConfig };
  const classKey = ['num_classes', 'class_num'].find((k) => k in known);
  if (!classKey) throw new ConfigError(`${name}: its config has no class count (num_classes), so it cannot be given a new head`);
  over[classKey] = numClasses;
  if ('img_size' in known && imgSize !== undefined && cfg.modelConfig.img_size === undefined) over.img_size = imgSize;
  if (cfg.dropPath !== undefined) {
    if (!('drop_path_rate' in known)) throw new ConfigError(`${name} has no drop_path_rate option (stochastic depth)`);
    over.drop_path_rate = cfg.dropPath;
  }
  if (cfg.drop !== undefined) {
    if (!('drop_rate' in known)) throw new ConfigError(`${name} has no drop_rate option (dropout)`);
    over.drop_rate = cfg.drop;
  }
  const model = createModel(name, over, { seed: cfg.seed });
  if (cfg.init !== undefined) notes.push(...(await loadInit(model, cfg.init, cfg.initKey, family.name, numClasses)));
  return { model, name, notes };
}

async function loadInit(model: ClassifierModel, init: string, key: string | undefined, family: string, numClasses: number): Promise<string[]> {
  const file = isModelDir(init) ? join(init, WEIGHTS_FILE) : init;
  if (!existsSync(file)) throw new ConfigError(`--init: no such file or model directory: '${init}'`);
  let report;
  const notes: string[] = [];
  if (file.endsWith('.safetensors')) {
    const { tensors, metadata } = await loadSafetensorsFile(file);
    if (isTrainCheckpoint(metadata)) {
      // A run's checkpoint: its model (or, with --init-key ema, its EMA) weights.
      const parts = splitCheckpointTensors(tensors);
      const sd = key === 'ema' ? parts.ema : parts.model;
      if (!sd) throw new ConfigError(`--init '${init}' is a training checkpoint without EMA weights`);
      report = model.loadStateDict(sd, { strict: false });
    }
  }
  if (!report) {
    const r = await loadWeights(model, file, { strict: false, family, ...(key !== undefined ? { key } : {}) });
    report = r.report;
    notes.push(...r.warnings.filter((w) => !w.startsWith('non-strict load')));
  }
  const shapes = new Map(model.namedTensors().map(([k, p]) => [k, p.data.shape]));
  const isHead = (k: string) => shapes.get(k)?.[0] === numClasses;
  const badMissing = report.missing.filter((k) => !isHead(k));
  const badShape = report.mismatched.filter((m) => !isHead(m.key));
  if (badMissing.length || badShape.length || report.unexpected.length) {
    const parts = [
      badMissing.length ? `missing ${badMissing.slice(0, 8).join(', ')}${badMissing.length > 8 ? ', …' : ''}` : '',
      report.unexpected.length ? `unexpected ${report.unexpected.slice(0, 8).join(', ')}${report.unexpected.length > 8 ? ', …' : ''}` : '',
      badShape.length ? `mis-shaped ${badShape.slice(0, 8).map((m) => `${m.key} (model [${m.expected.join(', ')}], checkpoint [${m.got.join(', ')}])`).join(', ')}` : '',
    ].filter(Boolean);
    throw new StateDictError(`--init '${init}' does not fit the model beyond its classifier: ${parts.join('; ')}. Check --model and --config against the checkpoint.`);
  }
  const fresh = [...report.missing, ...report.mismatched.map((m) => m.key)];
  if (fresh.length) notes.push(`new ${numClasses}-class head: ${fresh.join(', ')} freshly initialised; every other tensor loaded from '${init}'`);
  else notes.push(`initialised from '${init}' (all tensors)`);
  return notes;
}

// ------------------------------------------------------------------ loop

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}

/** A free run directory: `base`, else `base-2`, `base-3`, … */
export function freshRunDir(base: string): string {
  if (!existsSync(base)) return base;
  for (let i = 2; ; i++) if (!existsSync(`${base}-${i}`)) return `${base}-${i}`;
}

interface EvalResult {
  tally: Tally;
  seconds: number;
}

/** Evaluates `run` (a compiled eval-mode forward) over every batch of `loader`. */
async function evaluate(run: (x: NDArray) => Promise<NDArray>, loader: Loader, onProgress?: (done: number, total: number) => void): Promise<EvalResult> {
  const t0 = performance.now();
  const t = emptyTally();
  loader.prefetch(0, 0);
  for (let b = 0; b < loader.batches; b++) {
    const batch = await loader.get(0, b);
    loader.prefetch(0, b + 1);
    tally(t, await run(batch.x), batch.labels, batch.count);
    onProgress?.(b + 1, loader.batches);
  }
  return { tally: t, seconds: (performance.now() - t0) / 1000 };
}

/** Trains a model as `config` says (or continues the run `opts.resume` names). */
export async function train(config: TrainConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  const hooks = opts.hooks ?? {};
  let resumed: Checkpoint<TrainConfig> | undefined;
  let cfg: TrainConfig;
  if (opts.resume !== undefined) {
    if (!existsSync(opts.resume)) throw new ConfigError(`--resume: no such checkpoint '${opts.resume}'`);
    resumed = await loadCheckpoint<TrainConfig>(opts.resume);
    cfg = { ...resumed.state.config, threads: config.threads, workers: config.workers, stepsPerRun: config.stepsPerRun };
    // The run directory is where the checkpoint is (it may have moved).
    cfg.out = join(opts.resume, '..');
  } else {
    cfg = config;
  }
  if (!(Number.isInteger(cfg.epochs) && cfg.epochs >= 1)) throw new ConfigError(`epochs must be a whole number ≥ 1, got ${cfg.epochs}`);
  if (!(Number.isInteger(cfg.stepsPerRun) && cfg.stepsPerRun >= 1)) throw new ConfigError(`steps per run must be a whole number ≥ 1, got ${cfg.stepsPerRun}`);
  const runDir = cfg.out;
  await mkdir(runDir, { recursive: true });

  // ---- data and model
  const dataSpec: DataSpec = parseDataSpec(cfg.data);
  const probe = await Loader.create({ data: dataSpec, split: 'train', transform: { size: 8, mean: [0, 0, 0], std: [1, 1, 1], interpolation: 'bilinear' }, batchSize: 1, shuffle: false, dropLast: false, seed: 0 }, { worker: false });
  const classes = probe.dataset.classes;
  const nativeSize = probe.dataset.nativeSize;
  await probe.close();
  const numClasses = cfg.numClasses ?? classes.length;
  if (numClasses < classes.length) throw new ConfigError(`--num-classes ${numClasses} is fewer than the data set's ${classes.length} classes`);
  const requestedSize = cfg.imgSize ?? nativeSize;
  const built = await buildModel(cfg, numClasses, requestedSize);
  const { model, name } = built;
  model.eval();
  const pre = effectivePretrained(name, model);
  const imgSize = requestedSize ?? pre.inputSize[1];
  const mean = cfg.mean ?? pre.mean;
  const std = cfg.std ?? pre.std;
  const evalCropPct = nativeSize === imgSize ? 1 : pre.cropPct;
  const trainTransform: TransformSpec = { size: imgSize, mean, std, interpolation: cfg.interpolation, train: { ...(cfg.cropScale ? { scale: cfg.cropScale } : {}), ratio: cfg.cropRatio, hflip: cfg.hflip } };
  const valTransform: TransformSpec = { size: imgSize, mean, std, interpolation: cfg.interpolation, cropPct: evalCropPct };
  const mixup: MixupSpec | undefined = cfg.mixup > 0 || cfg.cutmix > 0 ? { mixupAlpha: cfg.mixup, cutmixAlpha: cfg.cutmix, prob: cfg.mixupProb, switchProb: cfg.mixupSwitchProb, smoothing: cfg.smoothing, numClasses } : undefined;
  const trainSpec: LoaderSpec = { data: { ...dataSpec, maxSide: 2 * imgSize }, split: 'train', transform: trainTransform, ...(mixup ? { mixup } : {}), batchSize: cfg.batchSize, shuffle: true, dropLast: true, seed: cfg.seed, ...(cfg.limitTrain ? { limit: cfg.limitTrain } : {}) };
  const valSpec: LoaderSpec = { data: dataSpec, split: 'val', transform: valTransform, batchSize: cfg.evalBatchSize ?? cfg.batchSize, shuffle: false, dropLast: false, seed: cfg.seed, ...(cfg.limitVal ? { limit: cfg.limitVal } : {}) };

  // ---- step, optimizer, EMA, schedule (nothing here holds resources until the first step)
  if (cfg.opt !== 'sgd' && cfg.opt !== 'adamw') throw new ConfigError(`unknown optimizer '${String(cfg.opt)}' (adamw, sgd)`);
  const optimizer: Optimizer = cfg.opt === 'sgd' ? new SGD({ momentum: cfg.momentum, nesterov: cfg.nesterov }) : new AdamW({ betas: cfg.betas, eps: cfg.eps });
  const groups = paramGroups(model.namedParameters(), cfg.weightDecay);
  const ema = cfg.ema ? new ModelEma(model, { decay: cfg.emaDecay, warmup: cfg.emaWarmup }) : undefined;
  const noiseRng = resumed ? new Rng(Uint32Array.from(resumed.state.noiseRng)) : new Rng(mixSeed(cfg.seed, NOISE_STREAM));
  const smoothing = cfg.smoothing;
  const step = new TrainStep(model, {
    optimizer,
    groups,
    loss: (logits, target) => crossEntropy(logits, target, { labelSmoothing: target.dtype === 'int64' ? smoothing : 0 }),
    ...(cfg.clipGrad !== undefined ? { clipGradNorm: cfg.clipGrad } : {}),
    threads: cfg.threads,
    rng: noiseRng,
    ...(ema ? { ema } : {}),
  });
  const schedule = makeSchedule({ kind: cfg.sched, lr: cfg.lr, epochs: cfg.epochs, warmupEpochs: cfg.warmupEpochs, warmupLr: cfg.warmupLr, minLr: cfg.minLr, decayEpochs: cfg.decayEpochs, decayRate: cfg.decayRate });
  const evalFn = compile((x) => model.call(x!), { params: 'inputs', threads: cfg.threads });
  const evalRun = async (x: NDArray) => (await evalFn(x))[0]!;

  let startEpoch = 0;
  let startBatch = 0;
  let sums: EpochSums = emptyEpochSums();
  let best = { top1: -1, epoch: 0 };
  let elapsedBefore = 0;
  if (resumed) {
    const { state } = resumed;
    model.loadStateDict(resumed.model);
    optimizer.loadStateDict(resumed.optim);
    if (ema) {
      if (!resumed.ema) throw new ConfigError(`'${opts.resume}' has no EMA weights, but the run keeps an EMA`);
      ema.loadStateDict(resumed.ema, state.emaUpdates ?? 0);
    }
    step.steps = state.step;
    startEpoch = state.epoch;
    startBatch = state.batch;
    sums = { ...state.sums };
    best = state.best ?? best;
    elapsedBefore = state.elapsed;
  }

  // ---- data loaders (worker threads: closed on every way out below)
  const trainLoader = await Loader.create(trainSpec, { worker: cfg.workers });
  const valLoader = await Loader.create(valSpec, { worker: cfg.workers }).catch(async (err: unknown) => {
    await trainLoader.close();
    throw err;
  });
  const nb = trainLoader.batches;

  try {
    const metrics = new MetricsLog(join(runDir, 'metrics.jsonl'));
    if (resumed) await metrics.truncateAfter(resumed.state.step, startEpoch);
    else await writeFile(metrics.path, '');
    const checkpointPath = join(runDir, CHECKPOINT_FILE);
    let lastCheckpoint: { epoch: number; batch: number; step: number } | undefined = resumed ? { epoch: startEpoch, batch: startBatch, step: resumed.state.step } : undefined;

    const info: RunInfo = {
      runDir,
      model: name,
      module: model,
      params: model.numParams(),
      numClasses,
      imgSize,
      train: trainLoader.dataset.description,
      val: valLoader.dataset.description,
      stepsPerEpoch: nb,
      epochs: cfg.epochs,
      valBatches: valLoader.batches,
      loader: trainLoader.mode === 'worker' ? 'batches made in a worker thread, one batch ahead' : 'batches made in-process',
      ...(resumed ? { resumedFrom: { path: opts.resume!, epoch: startEpoch, batch: startBatch, step: resumed.state.step } } : {}),
      notes: [...built.notes, ...[trainLoader.note, valLoader.note].filter((n): n is string => n !== undefined)],
    };
    hooks.onStart?.(info);

    const pretrained: PretrainedConfig = (() => {
      const { weights: _w, paperTop1: _p, ...rest } = pre;
      return { ...rest, inputSize: [3, imgSize, imgSize], mean, std, interpolation: cfg.interpolation, cropPct: evalCropPct, numClasses };
    })();
    const wallStart = performance.now();
    const elapsed = () => elapsedBefore + (performance.now() - wallStart) / 1000;
    const facts = (status: string): [string, string][] => [
      ['status', status],
      ['model', `${name} (${info.params.toLocaleString('en-US')} parameters, ${numClasses} classes, input ${imgSize}×${imgSize})`],
      ['train data', info.train],
      ['val data', info.val],
      ['steps', `${nb} per epoch × ${cfg.epochs} epochs, batch ${cfg.batchSize}`],
      ['optimizer', `${cfg.opt}, lr ${cfg.lr} (${cfg.sched}, ${cfg.warmupEpochs} warmup epochs), weight decay ${cfg.weightDecay} (none on norms, biases, position embeddings)`],
      ['runtime', `${opts.backend ?? 'onnxruntime-node (cpu)'}; ${info.loader}`],
      ['elapsed', fmtTime(elapsed())],
    ];
    const writeReport = async (status: string) => {
      const records: MetricsRecord[] = metrics.records();
      const last = records.filter((r) => r.kind === 'epoch').at(-1);
      const headline = last && last.kind === 'epoch' ? `val top-1 ${(last.val_top1 * 100).toFixed(2)}%, top-5 ${(last.val_top5 * 100).toFixed(2)}% after ${last.epoch} epoch${last.epoch === 1 ? '' : 's'}${last.ema_val_top1 !== undefined ? ` (EMA top-1 ${(last.ema_val_top1 * 100).toFixed(2)}%)` : ''}` : 'no epoch finished yet';
      const html = renderReport({ title: `volution train: ${name} on ${formatDataSpec(dataSpec)}`, status: `${status}: ${headline}`, facts: facts(status), config: { ...cfg, resolved_model_config: model.config }, records, stepsPerEpoch: nb });
      await writeFileAtomic(join(runDir, 'report.html'), html);
    };
    const state = (epoch: number, batch: number, s: EpochSums): TrainState<TrainConfig> => ({
      format: 1,
      config: cfg,
      epoch,
      batch,
      step: step.steps,
      noiseRng: Array.from(noiseRng.state),
      ...(ema ? { emaUpdates: ema.updates } : {}),
      sums: s,
      best,
      elapsed: elapsed(),
    });
    const writeCheckpoint = async (epoch: number, batch: number, s: EpochSums) => {
      await saveCheckpoint(checkpointPath, { state: state(epoch, batch, s), model: model.stateDict(), optim: optimizer.stateDict(), ...(ema ? { ema: ema.stateDict() } : {}) });
      lastCheckpoint = { epoch, batch, step: step.steps };
    };

    const losses: number[] = [];
    const records: EpochRecord[] = [];
    let evalSeconds = 0;
    const finish = async (status: TrainStatus, message: string, extra: Partial<TrainResult> = {}): Promise<TrainResult> => {
      await trainLoader.close();
      await valLoader.close();
      await step.release();
      await evalFn.release();
      return { status, runDir, losses, epochs: records, message, ...extra };
    };

    for (let epoch = startEpoch; epoch < cfg.epochs; epoch++) {
      if (opts.signal?.aborted && lastCheckpoint?.step === step.steps) {
        // Stopped between epochs: the epoch's checkpoint is already written.
        const message = `interrupted after epoch ${epoch} (step ${step.steps}); the checkpoint is ${checkpointPath}. Continue with --resume ${checkpointPath}`;
        await metrics.append({ kind: 'event', step: step.steps, time: elapsed(), event: 'interrupted', message });
        await writeReport(`interrupted after epoch ${epoch}`);
        return await finish('interrupted', message, { checkpoint: checkpointPath });
      }
      const b0 = epoch === startEpoch ? startBatch : 0;
      if (epoch !== startEpoch) sums = emptyEpochSums();
      const epochWall0 = performance.now() - sums.wallMs;
      // Steps go `stepsPerRun` to a graph run; the batches of the next run are made while this one runs.
      const runLength = (b: number) => Math.min(cfg.stepsPerRun, nb - b);
      const prefetchRun = (e: number, b: number) => {
        for (let i = 0; i < runLength(b); i++) trainLoader.prefetch(e, b + i);
      };
      prefetchRun(epoch, b0);
      for (let b = b0; b < nb; b += runLength(b)) {
        const n = runLength(b);
        const w0 = performance.now();
        const batches: Batch[] = [];
        for (let i = 0; i < n; i++) batches.push(await trainLoader.get(epoch, b + i));
        const waited = performance.now() - w0;
        if (b + n < nb) prefetchRun(epoch, b + n);
        else if (epoch + 1 < cfg.epochs) prefetchRun(epoch + 1, 0);
        const lrs = batches.map((_, i) => schedule.at(epoch + (b + i) / nb));
        const s0 = performance.now();
        let results;
        try {
          results = await step.runMany(batches.map((batch, i) => ({ x: batch.x, target: batch.target, lr: lrs[i]! })));
        } catch (err) {
          if (!(err instanceof NonFiniteError)) throw err;
          const at = err.step ?? step.steps + 1;
          const kept = lastCheckpoint ? `the last good checkpoint (epoch ${lastCheckpoint.epoch + (lastCheckpoint.batch ? 1 : 0)}${lastCheckpoint.batch ? `, batch ${lastCheckpoint.batch}` : ' start'}, step ${lastCheckpoint.step}) is kept at ${checkpointPath}` : 'no checkpoint had been written yet';
          const message = `training diverged at step ${at} (epoch ${epoch + 1}, batch ${b + at - step.steps}): the loss is not finite; ${kept}. Lower --lr, or clip gradients with --clip-grad.`;
          await metrics.append({ kind: 'event', step: at, time: elapsed(), event: 'diverged', message });
          await writeReport(`diverged at step ${at}`);
          return await finish('diverged', message, lastCheckpoint ? { checkpoint: checkpointPath } : {});
        }
        const runMs = performance.now() - s0;
        for (const [i, r] of results.entries()) {
          const batch = batches[i]!;
          const stepNo = step.steps - n + 1 + i;
          losses.push(r.loss);
          sums.batches++;
          sums.samples += batch.count;
          sums.lossSum += r.loss * batch.count;
          sums.correct += tally(emptyTally(), r.logits, batch.labels, batch.count).top1;
          sums.dataMs += batch.prepMs;
          sums.dataWaitMs += waited / n;
          sums.stepMs += runMs / n;
          sums.wallMs = performance.now() - epochWall0;
          if (stepNo % cfg.logEvery === 0) await metrics.append({ kind: 'step', epoch: epoch + 1, step: stepNo, loss: r.loss, lr: lrs[i]!, grad_norm: r.gradNorm, time: elapsed() });
          const perStep = sums.wallMs / sums.batches;
          const stepsLeft = (cfg.epochs - epoch) * nb - (b + i + 1);
          const evalLeft = (cfg.epochs - epoch) * (evalSeconds || (valLoader.batches * perStep) / 3000);
          hooks.onStep?.({
            epoch,
            epochs: cfg.epochs,
            batch: b + i + 1,
            batches: nb,
            step: stepNo,
            loss: r.loss,
            lossAvg: sums.lossSum / sums.samples,
            accAvg: sums.correct / sums.samples,
            lr: lrs[i]!,
            gradNorm: r.gradNorm,
            imagesPerS: (sums.samples / sums.wallMs) * 1000,
            etaS: (stepsLeft * perStep) / 1000 + evalLeft,
          });
        }
        if (opts.signal?.aborted) {
          await writeCheckpoint(epoch, b + n, sums);
          const message = `interrupted at step ${step.steps} (epoch ${epoch + 1}, batch ${b + n} of ${nb}); saved ${checkpointPath}. Continue with --resume ${checkpointPath}`;
          await metrics.append({ kind: 'event', step: step.steps, time: elapsed(), event: 'interrupted', message });
          await writeReport(`interrupted at step ${step.steps}`);
          return await finish('interrupted', message, { checkpoint: checkpointPath });
        }
      }

      // ---- evaluation
      const ev = await evaluate(evalRun, valLoader, (d, t) => hooks.onEval?.(d, t, false));
      let evEma: EvalResult | undefined;
      if (ema) evEma = await ema.withWeights(() => evaluate(evalRun, valLoader, (d, t) => hooks.onEval?.(d, t, true)));
      evalSeconds = ev.seconds + (evEma?.seconds ?? 0);
      const top1 = ev.tally.top1 / ev.tally.n;
      if (top1 > best.top1) best = { top1, epoch: epoch + 1 };
      const n = Math.max(1, sums.batches);
      const record: EpochRecord = {
        epoch: epoch + 1,
        step: step.steps,
        lr: schedule.at(epoch + 1 - 1 / nb),
        train_loss: sums.lossSum / Math.max(1, sums.samples),
        train_top1: sums.correct / Math.max(1, sums.samples),
        val_loss: ev.tally.lossSum / ev.tally.n,
        val_top1: top1,
        val_top5: ev.tally.top5 / ev.tally.n,
        ...(evEma ? { ema_val_top1: evEma.tally.top1 / evEma.tally.n, ema_val_top5: evEma.tally.top5 / evEma.tally.n, ema_val_loss: evEma.tally.lossSum / evEma.tally.n } : {}),
        images_per_s: (sums.samples / Math.max(1e-9, sums.wallMs)) * 1000,
        data_ms: sums.dataMs / n,
        data_wait_ms: sums.dataWaitMs / n,
        step_ms: sums.stepMs / n,
        eval_s: evalSeconds,
        epoch_s: sums.wallMs / 1000 + evalSeconds,
        best,
      };
      records.push(record);
      const { best: _b, ...line } = record;
      await metrics.append({ kind: 'epoch', ...line, time: elapsed() });
      await writeCheckpoint(epoch + 1, 0, emptyEpochSums());
      await writeReport(epoch + 1 < cfg.epochs ? `running (epoch ${epoch + 1} of ${cfg.epochs})` : 'completed');
      hooks.onEpoch?.(record);
    }

    // ---- the trained model, ready for predict / validate / export
    const modelDir = join(runDir, 'model');
    await saveModel(model, modelDir, { name, pretrained });
    let emaModelDir: string | undefined;
    if (ema) {
      emaModelDir = join(runDir, 'model_ema');
      await ema.withWeights(() => saveModel(model, emaModelDir!, { name, pretrained }));
    }
    await writeReport('completed');
    const last = records.at(-1);
    const message = last
      ? `done: val top-1 ${(last.val_top1 * 100).toFixed(2)}%, top-5 ${(last.val_top5 * 100).toFixed(2)}%${last.ema_val_top1 !== undefined ? `, EMA top-1 ${(last.ema_val_top1 * 100).toFixed(2)}%` : ''} after ${last.epoch} epoch${last.epoch === 1 ? '' : 's'} in ${fmtTime(elapsed())}`
      : `done: nothing left to train (the checkpoint is at epoch ${startEpoch} of ${cfg.epochs})`;
    return await finish('completed', message, { checkpoint: checkpointPath, modelDir, ...(emaModelDir ? { emaModelDir } : {}) });
  } catch (err) {
    await trainLoader.close().catch(() => undefined);
    await valLoader.close().catch(() => undefined);
    await step.release().catch(() => undefined);
    await evalFn.release().catch(() => undefined);
    throw err;
  }
}
