/** Batches: deterministic order and augmentation, the same from the worker thread as in-process; eval padding. */
import { describe, expect, it } from 'vitest';
import { BatchMaker, Loader, type LoaderSpec } from '../../src/train/loader.js';
import { parseDataSpec } from '../../src/train/data.js';

const base: LoaderSpec = {
  data: parseDataSpec('synthetic:size=16,train=50,val=13'),
  split: 'train',
  transform: { size: 16, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], interpolation: 'bilinear', train: { scale: [0.5, 1], ratio: [0.75, 1.33], hflip: 0.5 } },
  batchSize: 8,
  shuffle: true,
  dropLast: true,
  seed: 7,
};

describe('loader', () => {
  it('a batch is a pure function of (seed, epoch, index); each epoch is a fresh permutation', async () => {
    const a = new BatchMaker(base);
    const b = new BatchMaker(base);
    expect(a.batches).toBe(6);
    const x1 = await a.make(1, 3);
    await a.make(0, 0); // another epoch in between changes nothing
    const x2 = await b.make(1, 3);
    expect(Array.from(x1.x)).toEqual(Array.from(x2.x));
    expect(Array.from(x1.labels)).toEqual(Array.from(x2.labels));
    const e0 = Array.from(a.order(0));
    const e1 = Array.from(a.order(1));
    expect(e0).not.toEqual(e1);
    expect([...e0].sort((p, q) => p - q)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from((await new BatchMaker({ ...base, seed: 8 }).make(1, 3)).x)).not.toEqual(Array.from(x1.x));
  });

  it('the worker thread makes exactly the in-process batches', async () => {
    const spec = { ...base, mixup: { mixupAlpha: 0.8, cutmixAlpha: 1, prob: 1, switchProb: 0.5, smoothing: 0.1, numClasses: 10 } };
    const worker = await Loader.create(spec, { worker: true });
    const local = await Loader.create(spec, { worker: false });
    try {
      expect(worker.mode).toBe('worker');
      expect(local.mode).toBe('in-process');
      worker.prefetch(2, 0);
      for (const i of [0, 1, 5]) {
        const [w, l] = await Promise.all([worker.get(2, i), local.get(2, i)]);
        expect(Array.from(w.x.data)).toEqual(Array.from(l.x.data));
        expect(Array.from(w.target.data as Float32Array)).toEqual(Array.from(l.target.data as Float32Array));
        expect(w.target.shape).toEqual([8, 10]);
        for (let r = 0; r < 8; r++) expect((w.target.data as Float32Array).subarray(r * 10, r * 10 + 10).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
      }
    } finally {
      await worker.close();
      await local.close();
    }
  });

  it('evaluation batches keep their order and pad the last one', async () => {
    const ev = await Loader.create({ ...base, split: 'val', shuffle: false, dropLast: false, transform: { ...base.transform, train: undefined } }, { worker: false });
    expect(ev.batches).toBe(2);
    const last = await ev.get(0, 1);
    expect(last.count).toBe(5);
    expect(last.x.shape).toEqual([8, 3, 16, 16]);
    expect(Array.from(last.labels.subarray(5))).toEqual([-1, -1, -1]);
    expect(last.target.dtype).toBe('int64');
    const first = await ev.get(0, 0);
    expect(Array.from(first.labels)).toEqual(Array.from({ length: 8 }, (_, i) => ev.dataset.get(i) as { label: number }).map((s) => s.label));
    await ev.close();
  });
});
