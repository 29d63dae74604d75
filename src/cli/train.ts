/**
 * `volution train`: trains or fine-tunes a model (src/train/trainer.ts)
 * with a progress bar, an evaluation per epoch, a metrics log, an HTML
 * report and atomic checkpoints under runs/<name>/. Without options it runs
 * the main job: a narrow UniFormer on the built-in synthetic data set.
 */
import { join } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { NonFiniteError } from '../errors.js';
import { type DataSpec, parseDataSpec } from '../train/data.js';
import { type StepProgress, TRAIN_DEFAULTS, type TrainConfig, freshRunDir, train } from '../train/trainer.js';
import { type CliIO, Progress, formatInt } from './io.js';
import { addThreadsOption, backendDescription, parseConfig, parseNonNegativeInt, parsePositiveInt } from './options.js';

/**
 * The main job (`npm start`): a narrow UniFormer (two conv stages, two
 * attention stages) on 32×32 synthetic images, sized to finish in about
 * four minutes on 2 cores. See README "Training" for what it reaches.
 */
export const MAIN_JOB = {
  model: 'uniformer',
  config: { depth: [1, 1, 2, 1], embed_dim: [32, 64, 128, 256], head_dim: 32 },
  data: 'synthetic',
  epochs: 8,
  batch: 64,
} as const;

export function parseNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number');
  return n;
}

function parseNonNegative(value: string): number {
  const n = parseNumber(value);
  if (n < 0) throw new InvalidArgumentError('expected a number ≥ 0');
  return n;
}

function parseProbability(value: string): number {
  const n = parseNumber(value);
  if (n < 0 || n > 1) throw new InvalidArgumentError('expected a probability in [0, 1]');
  return n;
}

function parsePair(value: string): [number, number] {
  const parts = value.split(',').map((s) => Number(s.trim()));
  if (parts.length !== 2 || parts.some((p) => !Number.isFinite(p) || p <= 0) || parts[0]! > parts[1]!) throw new InvalidArgumentError('expected two positive numbers lo,hi with lo ≤ hi, e.g. 0.08,1');
  return parts as [number, number];
}

function parseTriple(value: string): [number, number, number] {
  const parts = value.split(',').map((s) => Number(s.trim()));
  if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p))) throw new InvalidArgumentError('expected three comma-separated numbers, e.g. 0.485,0.456,0.406');
  return parts as [number, number, number];
}

export interface TrainCliOptions {
  model?: string;
  config?: string;
  data: string;
  epochs?: number;
  batch?: number;
  evalBatch?: number;
  lr?: number;
  minLr?: number;
  warmupEpochs?: number;
  warmupLr?: number;
  sched: 'cosine' | 'step' | 'constant';
  decayEpochs?: number;
  decayRate?: number;
  opt: 'adamw' | 'sgd';
  momentum?: number;
  nesterov?: boolean;
  weightDecay?: number;
  betas?: [number, number];
  eps?: number;
  clipGrad?: number;
  smoothing?: number;
  mixup?: number;
  cutmix?: number;
  mixupProb?: number;
  mixupSwitchProb?: number;
  cropScale?: string;
  cropRatio?: [number, number];
  hflip?: number;
  interpolation?: 'bilinear' | 'bicubic';
  mean?: [number, number, number];
  std?: [number, number, number];
  imgSize?: number;
  dropPath?: number;
  drop?: number;
  ema?: boolean;
  emaDecay?: number;
  emaWarmup: boolean;
  init?: string;
  initKey?: string;
  numClasses?: number;
  resume?: string;
  seed?: number;
  threads: number;
  stepsPerRun?: number;
  workers: boolean;
  out?: string;
  name?: string;
  limitTrain?: number;
  limitVal?: number;
  logEvery?: number;
}

const HELP = `
Data (--data)
  synthetic[:size=32,train=20000,val=2000,seed=0]
                     the built-in synthetic set: 10 classes = arrangement of two
                     textured patches × the first patch's texture (no download)
  cifar:<dir>        CIFAR-10 / CIFAR-100 binary version (cifar10:, cifar100: to force)
  <dir>              image folder: <dir>/<class>/*.jpg, or <dir>/train/<class>/… and
                     <dir>/val/<class>/… (else 10% of each class is held out)
  Augmentation defaults by data set: synthetic: none (a flip or a crop would change
  the label); CIFAR: random resized crop (0.25–1) + flip; folders: (0.08–1) + flip.

Outputs (in runs/<name>/, written as the run goes)
  metrics.jsonl            one JSON line per ${TRAIN_DEFAULTS.logEvery} steps and per epoch
  report.html              loss and accuracy curves (inline SVG) and the run's config
  checkpoint.safetensors   model, optimizer, EMA, schedule position and RNG state,
                           written atomically after each epoch and on Ctrl-C
  model/ (model_ema/)      the final model directory, for predict, validate, export

Stopping and resuming
  Ctrl-C finishes the current steps, saves a checkpoint and exits; --resume
  runs/<name>/checkpoint.safetensors continues exactly (the same per-step
  losses as a run that never stopped). A NaN/Inf loss stops the run, naming
  the step; the last good checkpoint is kept.

Examples
  volution train                                    # the main job (about 4 min on 2 cores)
  volution train --model ceit --config '{"embed_dim": 96, "depth": 4, "num_heads": 3, "patch_size": 1}' --data synthetic --epochs 5
  volution train --model uniformer_small --init uniformer_small_in1k.pth --data ./flowers --epochs 30 --batch 32 --lr 1e-4 --img-size 224
  volution train --resume runs/uniformer-synthetic/checkpoint.safetensors
`;

function progressLine(p: StepProgress): string {
  const width = 20;
  const filled = Math.round((p.batch / p.batches) * width);
  const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled ? '>' : ''}${' '.repeat(width - filled)}`;
  const eta = p.etaS >= 60 ? `${Math.floor(p.etaS / 60)}m${String(Math.round(p.etaS % 60)).padStart(2, '0')}s` : `${Math.round(p.etaS)}s`;
  return `epoch ${p.epoch + 1}/${p.epochs} [${bar}] ${p.batch}/${p.batches}  loss ${p.loss.toFixed(3)} (avg ${p.lossAvg.toFixed(3)})  acc ${(p.accAvg * 100).toFixed(1)}%  ${p.imagesPerS.toFixed(0)} img/s  lr ${p.lr.toExponential(2)}  ETA ${eta}`;
}

/** Per-data-set augmentation defaults: RandomResizedCrop scale and flip probability. */
function augmentDefaults(spec: DataSpec): { cropScale: [number, number] | null; hflip: number } {
  if (spec.kind === 'synthetic') return { cropScale: null, hflip: 0 };
  if (spec.kind === 'cifar10' || spec.kind === 'cifar100') return { cropScale: [0.25, 1], hflip: 0.5 };
  return { cropScale: [0.08, 1], hflip: 0.5 };
}

/** The run's configuration from the command line (the main job's settings when --model is not given). */
export function trainConfigFromCli(o: TrainCliOptions): TrainConfig {
  const mainJob = o.model === undefined && o.init === undefined;
  const spec = parseDataSpec(o.data);
  const aug = augmentDefaults(spec);
  const model = o.model ?? (mainJob ? MAIN_JOB.model : undefined);
  const base = `${(model ?? 'model').replace(/[^\w.-]+/g, '_')}-${spec.kind}`;
  const cropScale = o.cropScale === undefined ? aug.cropScale : o.cropScale === 'none' ? null : parsePair(o.cropScale);
  const def = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  return {
    ...TRAIN_DEFAULTS,
    ...(model !== undefined ? { model } : {}),
    modelConfig: o.config !== undefined ? parseConfig(o.config) : mainJob ? { ...MAIN_JOB.config } : {},
    ...(o.init !== undefined ? { init: o.init } : {}),
    ...(o.initKey !== undefined ? { initKey: o.initKey } : {}),
    ...(o.numClasses !== undefined ? { numClasses: o.numClasses } : {}),
    data: o.data,
    ...(o.imgSize !== undefined ? { imgSize: o.imgSize } : {}),
    epochs: def(o.epochs, mainJob ? MAIN_JOB.epochs : TRAIN_DEFAULTS.epochs),
    batchSize: def(o.batch, mainJob ? MAIN_JOB.batch : TRAIN_DEFAULTS.batchSize),
    ...(o.evalBatch !== undefined ? { evalBatchSize: o.evalBatch } : {}),
    opt: o.opt,
    lr: def(o.lr, TRAIN_DEFAULTS.lr),
    weightDecay: def(o.weightDecay, TRAIN_DEFAULTS.weightDecay),
    momentum: def(o.momentum, TRAIN_DEFAULTS.momentum),
    nesterov: def(o.nesterov, TRAIN_DEFAULTS.nesterov),
    betas: def(o.betas, TRAIN_DEFAULTS.betas),
    eps: def(o.eps, TRAIN_DEFAULTS.eps),
    ...(o.clipGrad !== undefined ? { clipGrad: o.clipGrad } : {}),
    sched: o.sched,
    warmupEpochs: def(o.warmupEpochs, TRAIN_DEFAULTS.warmupEpochs),
    warmupLr: def(o.warmupLr, TRAIN_DEFAULTS.warmupLr),
    minLr: def(o.minLr, TRAIN_DEFAULTS.minLr),
    decayEpochs: def(o.decayEpochs, TRAIN_DEFAULTS.decayEpochs),
    decayRate: def(o.decayRate, TRAIN_DEFAULTS.decayRate),
    smoothing: def(o.smoothing, TRAIN_DEFAULTS.smoothing),
    mixup: def(o.mixup, TRAIN_DEFAULTS.mixup),
    cutmix: def(o.cutmix, TRAIN_DEFAULTS.cutmix),
    mixupProb: def(o.mixupProb, TRAIN_DEFAULTS.mixupProb),
    mixupSwitchProb: def(o.mixupSwitchProb, TRAIN_DEFAULTS.mixupSwitchProb),
    cropScale,
    cropRatio: def(o.cropRatio, TRAIN_DEFAULTS.cropRatio),
    hflip: def(o.hflip, aug.hflip),
    interpolation: def(o.interpolation, TRAIN_DEFAULTS.interpolation),
    ...(o.mean !== undefined ? { mean: o.mean } : {}),
    ...(o.std !== undefined ? { std: o.std } : {}),
    ...(o.dropPath !== undefined ? { dropPath: o.dropPath } : {}),
    ...(o.drop !== undefined ? { drop: o.drop } : {}),
    ema: def(o.ema, TRAIN_DEFAULTS.ema),
    emaDecay: def(o.emaDecay, TRAIN_DEFAULTS.emaDecay),
    emaWarmup: o.emaWarmup,
    seed: def(o.seed, TRAIN_DEFAULTS.seed),
    threads: o.threads,
    stepsPerRun: def(o.stepsPerRun, TRAIN_DEFAULTS.stepsPerRun),
    workers: o.workers,
    logEvery: def(o.logEvery, TRAIN_DEFAULTS.logEvery),
    ...(o.limitTrain !== undefined ? { limitTrain: o.limitTrain } : {}),
    ...(o.limitVal !== undefined ? { limitVal: o.limitVal } : {}),
    out: o.out ?? freshRunDir(join('runs', o.name ?? base)),
  };
}

async function runTrain(o: TrainCliOptions, io: CliIO): Promise<void> {
  const config = trainConfigFromCli(o);
  const progress = new Progress(io);
  const controller = new AbortController();
  // A signal forwarded by a parent (npm relays Ctrl-C to its child, which got it from the terminal too)
  // arrives right after the first: only a second press a moment later quits without saving.
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      if (performance.now() - firstSignalAt < 1000) return;
      io.err(`\n${signal} again: exiting without saving\n`);
      process.exit(130);
    }
    firstSignalAt = performance.now();
    controller.abort();
    progress.done();
    io.err(`\n${signal === 'SIGINT' ? 'Ctrl-C' : signal}: finishing the current steps, then saving a checkpoint (Ctrl-C again to quit at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let lastPrinted = -1;
  let epochs = config.epochs;
  try {
    const result = await train(config, {
      ...(o.resume !== undefined ? { resume: o.resume } : {}),
      signal: controller.signal,
      backend: backendDescription(config.threads),
      hooks: {
        onStart: (info) => {
          epochs = info.epochs;
          if (info.resumedFrom) io.err(`resuming ${info.runDir} from epoch ${info.resumedFrom.epoch + 1}, batch ${info.resumedFrom.batch} (step ${info.resumedFrom.step}); the run's saved config is used\n`);
          io.out(`training ${info.model}: ${formatInt(info.params)} parameters, ${info.numClasses} classes, input ${info.imgSize}×${info.imgSize}\n`);
          io.out(`  data: ${info.train}; ${info.val}\n`);
          io.out(`  ${info.stepsPerEpoch} steps per epoch × ${epochs} epoch${epochs === 1 ? '' : 's'} on ${backendDescription(config.threads)}, ${config.stepsPerRun} step${config.stepsPerRun === 1 ? '' : 's'} per run; ${info.loader}\n`);
          io.out(`  run directory: ${info.runDir}\n`);
          for (const n of info.notes) io.err(`note: ${n}\n`);
          // Tracing, autodiff and ONNX Runtime's session creation: seconds to tens of seconds for a large model.
          progress.update('building the train step graph …');
        },
        onStep: (p) => {
          progress.update(progressLine(p));
          // Without a terminal: a line every tenth of an epoch.
          const tenth = Math.floor((p.batch * 10) / p.batches);
          if (!io.errIsTTY && tenth !== lastPrinted && p.batch % Math.max(1, Math.floor(p.batches / 10)) === 0) {
            lastPrinted = tenth;
            io.err(`${progressLine(p)}\n`);
          }
        },
        onEval: (done, total, ema) => progress.update(`evaluating${ema ? ' (EMA)' : ''} ${done}/${total}`),
        onEpoch: (e) => {
          progress.done();
          lastPrinted = -1;
          const ema = e.ema_val_top1 !== undefined ? `  EMA top-1 ${(e.ema_val_top1 * 100).toFixed(2)}%` : '';
          io.out(
            `epoch ${e.epoch}/${epochs}  train loss ${e.train_loss.toFixed(4)} acc ${(e.train_top1 * 100).toFixed(1)}%  ` +
              `val loss ${e.val_loss.toFixed(4)} top-1 ${(e.val_top1 * 100).toFixed(2)}% top-5 ${(e.val_top5 * 100).toFixed(2)}%${ema}  ` +
              `${e.images_per_s.toFixed(0)} img/s  data ${e.data_ms.toFixed(1)} ms/batch (waited ${e.data_wait_ms.toFixed(1)} ms) vs step ${e.step_ms.toFixed(0)} ms  ${e.epoch_s.toFixed(1)} s\n`,
          );
        },
        onLog: (m) => io.err(`${m}\n`),
      },
    });
    progress.done();
    if (result.status === 'diverged') throw new NonFiniteError(result.message);
    io.out(`${result.message}\n`);
    if (result.status === 'completed') {
      io.out(`report: ${join(result.runDir, 'report.html')}\n`);
      io.out(`model: ${result.modelDir}${result.emaModelDir ? ` (EMA: ${result.emaModelDir})` : ''}\n`);
    }
  } finally {
    progress.done();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function registerTrain(program: Command, io: CliIO): Command {
  const d = TRAIN_DEFAULTS;
  const cmd = program
    .command('train')
    .description('train or fine-tune a model; without options, the main job (a narrow UniFormer on the synthetic data set, about 3 minutes)')
    .option('--model <name>', `variant or family to train (default: the main job's ${MAIN_JOB.model} with ${JSON.stringify(MAIN_JOB.config)})`)
    .option('--config <json|file>', 'model config overrides, official snake_case options')
    .option('--data <spec>', 'synthetic[:opts], cifar:<dir> or an image folder (see below)', MAIN_JOB.data)
    .option('--epochs <n>', `epochs (default ${d.epochs}; main job ${MAIN_JOB.epochs})`, parsePositiveInt)
    .option('--batch <n>', `batch size (default ${d.batchSize})`, parsePositiveInt)
    .option('--eval-batch <n>', 'evaluation batch size (default: --batch)', parsePositiveInt)
    .addOption(new Option('--opt <name>', 'optimizer').choices(['adamw', 'sgd']).default('adamw'))
    .option('--lr <x>', `peak learning rate (default ${d.lr})`, parseNonNegative)
    .option('--weight-decay <x>', `decoupled (AdamW) or L2 (SGD) weight decay; none on norms, biases, position embeddings (default ${d.weightDecay})`, parseNonNegative)
    .option('--momentum <x>', `SGD momentum (default ${d.momentum})`, parseNonNegative)
    .option('--nesterov', 'SGD with Nesterov momentum')
    .option('--betas <b1,b2>', 'AdamW betas (default 0.9,0.999)', parsePair)
    .option('--eps <x>', 'AdamW epsilon (default 1e-8)', parseNonNegative)
    .option('--clip-grad <norm>', 'clip gradients to this global L2 norm', parseNonNegative)
    .addOption(new Option('--sched <kind>', 'learning-rate schedule').choices(['cosine', 'step', 'constant']).default('cosine'))
    .option('--warmup-epochs <n>', `linear warmup epochs (default ${d.warmupEpochs})`, parseNonNegative)
    .option('--warmup-lr <x>', `learning rate at the start of the warmup (default ${d.warmupLr})`, parseNonNegative)
    .option('--min-lr <x>', `cosine floor (default ${d.minLr})`, parseNonNegative)
    .option('--decay-epochs <n>', `step schedule: epochs between decays (default ${d.decayEpochs})`, parseNonNegative)
    .option('--decay-rate <x>', `step schedule: factor per decay (default ${d.decayRate})`, parseNonNegative)
    .option('--smoothing <x>', `label smoothing (default ${d.smoothing})`, parseProbability)
    .option('--mixup <alpha>', 'mixup Beta(α, α); 0 = off (DeiT: 0.8)', parseNonNegative)
    .option('--cutmix <alpha>', 'cutmix Beta(α, α); 0 = off (DeiT: 1.0)', parseNonNegative)
    .option('--mixup-prob <p>', 'probability of mixing a batch (default 1)', parseProbability)
    .option('--mixup-switch-prob <p>', 'with both: probability of cutmix (default 0.5)', parseProbability)
    .option('--crop-scale <lo,hi|none>', 'RandomResizedCrop area range, or none (default depends on the data, see below)')
    .option('--crop-ratio <lo,hi>', 'RandomResizedCrop aspect range (default 0.75,1.333)', parsePair)
    .option('--hflip <p>', 'horizontal flip probability (default depends on the data)', parseProbability)
    .addOption(new Option('--interpolation <kind>', 'resize filter').choices(['bilinear', 'bicubic']))
    .option('--mean <r,g,b>', "normalisation mean (default: the model's pretrained config, ImageNet's)", parseTriple)
    .option('--std <r,g,b>', 'normalisation std', parseTriple)
    .option('--img-size <n>', "input side (default: the data's native size, else the model's)", parsePositiveInt)
    .option('--drop-path <rate>', "stochastic depth: the config's drop_path_rate (linear over blocks)", parseProbability)
    .option('--drop <rate>', "dropout: the config's drop_rate", parseProbability)
    .option('--ema', 'keep an exponential moving average of the weights, evaluated each epoch')
    .option('--ema-decay <x>', `EMA decay (default ${d.emaDecay})`, parseProbability)
    .option('--no-ema-warmup', 'no EMA decay warmup (timm V2 behaviour)')
    .option('--init <weights>', 'start from weights: a checkpoint (.pth, .safetensors, .pdparams), a model directory or a run checkpoint; the head is re-initialised when the class count differs')
    .option('--init-key <entry>', "training-checkpoint entry holding the weights (e.g. 'model_ema'; 'ema' for a run checkpoint's EMA)")
    .option('--num-classes <n>', "classes of the head (default: the data set's)", parsePositiveInt)
    .option('--resume <checkpoint>', "continue a run from its checkpoint.safetensors (the run's saved config is used)")
    .option('--seed <n>', 'seed of initialisation, data order, augmentation and dropout (default 0)', parseNonNegativeInt)
    .option('--no-workers', 'prepare batches on the main thread (no data worker)')
    .option('--steps-per-run <n>', `train steps per ONNX Runtime run (default ${d.stepsPerRun}: fewer copies of the weights in and out; 1: about 20% less memory)`, parsePositiveInt)
    .option('--name <name>', 'run name: outputs go to runs/<name> (default <model>-<data>, numbered if taken)')
    .option('--out <dir>', 'run directory (overrides --name)')
    .option('--limit-train <n>', 'use only the first n training samples', parsePositiveInt)
    .option('--limit-val <n>', 'use only the first n validation samples', parsePositiveInt)
    .option('--log-every <n>', `steps between metrics.jsonl step records (default ${d.logEvery})`, parsePositiveInt);
  addThreadsOption(cmd);
  return cmd.addHelpText('after', HELP).action((opts: TrainCliOptions) => runTrain(opts, io));
}
