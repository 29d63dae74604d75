/** Training: losses, optimizers, schedules, EMA, data, augmentation, the compiled step and the loop. */
export { crossEntropy, type CrossEntropyOptions } from './losses.js';
export { AdamW, OPTIMIZER_CHUNK, SGD, chunkGroups, paramGroups, type AdamWOptions, type Optimizer, type ParamGroup, type SgdOptions, type StepScalars } from './optim.js';
export { TrainStep, type LossFn, type StepBatch, type StepResult, type TrainStepOptions } from './step.js';
export { trainModeGradients, type GradientReport } from './debug.js';
export { makeSchedule, type LrSchedule, type ScheduleKind, type ScheduleOptions } from './schedule.js';
export { ModelEma, type EmaOptions } from './ema.js';
export { SYNTHETIC_CLASSES, SyntheticDataset, type SyntheticOptions } from './synthetic.js';
export { CifarDataset, ImageFolder, SyntheticImages, formatDataSpec, openDataset, parseCifar, parseDataSpec, type DataSpec, type Dataset, type RgbImage, type Sample, type Split } from './data.js';
export { evalCrop, mixBatch, mixupTargets, randomResizedCropBox, sampleBeta, transformInto, type MixupSpec, type TransformSpec } from './augment.js';
export { BatchMaker, Loader, mixSeed, type Batch, type LoaderSpec } from './loader.js';
export { CHECKPOINT_FILE, loadCheckpoint, saveCheckpoint, type Checkpoint, type TrainState } from './checkpoint.js';
export { MetricsLog, emptyTally, tally, type MetricsRecord, type Tally } from './metrics.js';
export { renderReport, type ReportInput } from './report.js';
export { TRAIN_DEFAULTS, buildModel, freshRunDir, train, type EpochRecord, type RunInfo, type StepProgress, type TrainConfig, type TrainHooks, type TrainOptions, type TrainResult } from './trainer.js';
