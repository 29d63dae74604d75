/**
 * The training loop on a tiny UniFormer (BatchNorm, drop-path, EMA, mixup,
 * cutmix all on): exact resume, the NaN stop, and learning.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import '../../src/models/index.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { MetricsLog } from '../../src/train/metrics.js';
import { TRAIN_DEFAULTS, type TrainConfig, type TrainHooks, train } from '../../src/train/trainer.js';

const tmp = () => tempDir('volution-train-');

/** 4 steps per epoch of 16 images, 3 epochs. */
function tinyConfig(out: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return {
    ...TRAIN_DEFAULTS,
    model: 'uniformer',
    modelConfig: { depth: [1, 1, 1, 1], embed_dim: [8, 16, 32, 32], head_dim: 8 },
    data: 'synthetic:train=64,val=24',
    epochs: 3,
    batchSize: 16,
    lr: 2e-3,
    warmupEpochs: 1,
    dropPath: 0.2,
    mixup: 0.8,
    cutmix: 1,
    cropScale: [0.6, 1],
    hflip: 0.5,
    ema: true,
    emaDecay: 0.9,
    logEvery: 1,
    out,
    ...over,
  };
}

describe('training loop', () => {
  it('resumes exactly: interrupted after epoch 1 and again mid-epoch 3, it takes the same steps as an uninterrupted run', async () => {
    const full = await train(tinyConfig(tmp()));
    expect(full.status).toBe('completed');
    expect(full.losses).toHaveLength(12);

    const dir = tmp();
    const stop = new AbortController();
    const first = await train(tinyConfig(dir), { signal: stop.signal, hooks: { onEpoch: () => stop.abort() } });
    expect(first.status).toBe('interrupted');
    expect(first.message).toMatch(/interrupted after epoch 1 \(step 4\)/);
    const ckpt = await loadCheckpoint(first.checkpoint!);
    expect(ckpt.state).toMatchObject({ epoch: 1, batch: 0, step: 4 });
    expect(ckpt.ema?.size).toBeGreaterThan(0);
    expect(ckpt.optim.size).toBeGreaterThan(0);

    // Two steps per graph run by default; one here, to stop at an odd step. The third leg then
    // pairs the steps differently from the uninterrupted run, (10, 11) and 12 alone.
    const stop2 = new AbortController();
    const hooks: TrainHooks = { onStep: (p) => p.step === 9 && stop2.abort() };
    const second = await train(tinyConfig(tmp(), { stepsPerRun: 1 }), { resume: first.checkpoint!, signal: stop2.signal, hooks });
    expect(second.status).toBe('interrupted');
    expect(second.message).toMatch(/interrupted at step 9 \(epoch 3, batch 1 of 4\)/);
    const third = await train(tinyConfig(tmp()), { resume: first.checkpoint! });
    expect(third.status).toBe('completed');

    expect([...first.losses, ...second.losses, ...third.losses]).toEqual(full.losses);
    // Same epoch metrics (train running sums restored mid-epoch, same evaluation) and same final weights.
    const strip = (r: (typeof full.epochs)[number]) => ({ ...r, images_per_s: 0, data_ms: 0, data_wait_ms: 0, step_ms: 0, eval_s: 0, epoch_s: 0 });
    expect([...second.epochs, ...third.epochs].map(strip)).toEqual(full.epochs.slice(1).map(strip));
    const a = readFileSync(join(full.modelDir!, 'model.safetensors'));
    const b = readFileSync(join(third.modelDir!, 'model.safetensors'));
    expect(b.equals(a)).toBe(true);
    const c = readFileSync(join(full.emaModelDir!, 'model.safetensors'));
    const d = readFileSync(join(third.emaModelDir!, 'model.safetensors'));
    expect(d.equals(c)).toBe(true);
    // The resumed run's log reads like the uninterrupted one (plus the interruption events).
    const steps = (p: string) => MetricsLog.read(join(p, 'metrics.jsonl')).filter((r) => r.kind === 'step').map((r) => (r as { loss: number }).loss);
    expect(steps(dir)).toEqual(steps(full.runDir));
    const report = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(report).toContain('<svg');
    expect(report).toContain('drop_path_rate&quot;: 0.2');
  });

  it('a NaN loss stops the run, names the step and keeps the last good checkpoint', async () => {
    const dir = tmp();
    let saved: Buffer | undefined;
    let model: { namedParameters(): [string, { data: NDArray }][] } | undefined;
    const r = await train(tinyConfig(dir, { epochs: 2, ema: false, mixup: 0, cutmix: 0 }), {
      hooks: {
        onStart: (info) => (model = info.module),
        onEpoch: () => {
          saved = readFileSync(join(dir, 'checkpoint.safetensors'));
          const [, p] = model!.namedParameters()[0]!;
          p.data = new NDArray('float32', p.data.shape, new Float32Array(p.data.size).fill(NaN));
        },
      },
    });
    expect(r.status).toBe('diverged');
    expect(r.message).toMatch(/diverged at step 5 \(epoch 2, batch 1\).*last good checkpoint \(epoch 1 start, step 4\) is kept/);
    expect(readFileSync(join(dir, 'checkpoint.safetensors')).equals(saved!)).toBe(true);
    const events = MetricsLog.read(join(dir, 'metrics.jsonl')).filter((x) => x.kind === 'event');
    expect(events).toMatchObject([{ event: 'diverged', step: 5 }]);
  });

  it('learns: a few hundred steps drive the loss well below its start', async () => {
    const r = await train(tinyConfig(tmp(), { data: 'synthetic:train=128,val=16', epochs: 25, batchSize: 16, lr: 3e-3, dropPath: 0, mixup: 0, cutmix: 0, smoothing: 0, ema: false, cropScale: null, hflip: 0, logEvery: 50 }));
    expect(r.losses).toHaveLength(200);
    const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
    const start = mean(r.losses.slice(0, 8));
    const end = mean(r.losses.slice(-8));
    expect(start).toBeGreaterThan(2);
    expect(end).toBeLessThan(0.4 * start);
    expect(r.epochs.at(-1)!.train_top1).toBeGreaterThan(0.7);
  });
});
