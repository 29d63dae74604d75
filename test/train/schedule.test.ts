/** Learning-rate schedules (timm's formulas) and the weight EMA. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { Linear } from '../../src/nn/layers.js';
import { Rng } from '../../src/rng.js';
import { ModelEma } from '../../src/train/ema.js';
import { makeSchedule } from '../../src/train/schedule.js';

describe('learning-rate schedules', () => {
  it('cosine with linear warmup', () => {
    const s = makeSchedule({ kind: 'cosine', lr: 1e-3, epochs: 10, warmupEpochs: 2, warmupLr: 1e-6, minLr: 1e-5 });
    expect(s.at(0)).toBeCloseTo(1e-6, 12);
    expect(s.at(1)).toBeCloseTo(1e-6 + 0.5 * (1e-3 - 1e-6), 12);
    expect(s.at(2)).toBeCloseTo(1e-3, 12);
    // halfway through the cosine part: the mean of lr and min lr
    expect(s.at(6)).toBeCloseTo((1e-3 + 1e-5) / 2, 12);
    expect(s.at(10)).toBeCloseTo(1e-5, 12);
    expect(s.at(12)).toBeCloseTo(1e-5, 12);
    // monotone after the warmup
    let prev = Infinity;
    for (let e = 2; e <= 10; e += 0.25) {
      expect(s.at(e)).toBeLessThanOrEqual(prev);
      prev = s.at(e);
    }
  });

  it('step decay counts absolute epochs', () => {
    const s = makeSchedule({ kind: 'step', lr: 0.1, epochs: 90, decayEpochs: 30, decayRate: 0.1, warmupEpochs: 0 });
    expect(s.at(0)).toBeCloseTo(0.1);
    expect(s.at(29.9)).toBeCloseTo(0.1);
    expect(s.at(30)).toBeCloseTo(0.01);
    expect(s.at(65)).toBeCloseTo(0.001);
  });

  it('constant, and bad options are typed errors', () => {
    expect(makeSchedule({ kind: 'constant', lr: 0.5, epochs: 3 }).at(2.5)).toBe(0.5);
    expect(() => makeSchedule({ kind: 'cosine', lr: -1, epochs: 3 })).toThrow(ConfigError);
    expect(() => makeSchedule({ kind: 'cosine', lr: 1, epochs: 3, warmupEpochs: 5 })).toThrow(/warmup/);
    expect(() => makeSchedule({ kind: 'linear' as 'cosine', lr: 1, epochs: 3 })).toThrow(/unknown kind/);
  });
});

describe('weight EMA', () => {
  const model = () => new Linear(2, 2, { rng: new Rng(0) }).nameParameters();

  it('lends the model its averaged weights and takes them back', async () => {
    const m = model();
    const ema = new ModelEma(m, { decay: 0.5 });
    ema.loadStateDict(new Map([['weight', NDArray.float32([2, 2], [1, 2, 3, 4])], ['bias', NDArray.float32([2], [5, 6])]]), 3);
    m.weight.data = NDArray.float32([2, 2], [8, 8, 8, 8]);
    const inside = await ema.withWeights(async () => Array.from(m.weight.data.data as Float32Array));
    expect(inside).toEqual([1, 2, 3, 4]);
    expect(Array.from(m.weight.data.data as Float32Array)).toEqual([8, 8, 8, 8]);
    expect(ema.updates).toBe(3);
  });
});
