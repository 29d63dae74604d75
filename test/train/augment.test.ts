/** Augmentation: RandomResizedCrop boxes, the evaluation transform, flips, Mixup/CutMix targets. */
import { join } from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { loadImage } from '../../src/io/image.js';
import { Rng } from '../../src/rng.js';
import { mixBatch, mixupTargets, randomResizedCropBox, sampleBeta, transformInto } from '../../src/train/augment.js';
import type { RgbImage } from '../../src/train/data.js';

function gradientImage(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([(x * 255) / (w - 1), (y * 255) / (h - 1), ((x + y) * 97) % 256], (y * w + x) * 3);
  return { data, width: w, height: h };
}

describe('Mixup / CutMix', () => {
  it('soft targets are distributions (every row sums to 1) for any lam, smoothing and labels', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 20 }), fc.array(fc.nat(), { minLength: 1, maxLength: 9 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 0.5, noNaN: true }), (k, raw, lam, eps) => {
        const labels = raw.map((l) => l % k);
        const t = mixupTargets(labels, k, lam, eps);
        for (let i = 0; i < labels.length; i++) {
          let s = 0;
          for (let j = 0; j < k; j++) {
            expect(t[i * k + j]!).toBeGreaterThanOrEqual(0);
            s += t[i * k + j]!;
          }
          expect(s).toBeCloseTo(1, 5);
        }
      }),
    );
  });

  it('mixBatch: targets sum to 1, mixup blends with the reversed batch, cutmix pastes a box whose area sets lam', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.constantFrom<[number, number]>([0.8, 0], [0, 1], [0.8, 1]), (seed, [mix, cut]) => {
        const [b, c, h, w] = [4, 3, 8, 8];
        const x = Float32Array.from({ length: b * c * h * w }, (_, i) => Math.floor(i / (c * h * w)));
        const labels = [0, 1, 2, 3];
        const r = mixBatch(x, [b, c, h, w], labels, { mixupAlpha: mix, cutmixAlpha: cut, prob: 1, switchProb: 0.5, smoothing: 0.1, numClasses: 5 }, new Rng(seed));
        for (let i = 0; i < b; i++) expect(r.target.subarray(i * 5, i * 5 + 5).reduce((s, v) => s + v, 0)).toBeCloseTo(1, 5);
        const img0 = x.subarray(0, c * h * w);
        if (r.mode === 'mixup') for (const v of img0) expect(v).toBeCloseTo(r.lam * 0 + (1 - r.lam) * 3, 5);
        if (r.mode === 'cutmix') {
          const kept = img0.filter((v) => v === 0).length / img0.length;
          expect(kept).toBeCloseTo(r.lam, 6);
        }
        // the target puts lam on the own label and 1 − lam on the partner's (plus smoothing)
        expect(r.target[0]! - 0.02).toBeCloseTo(r.lam * 0.9, 5);
        expect(r.target[3]! - 0.02).toBeCloseTo((1 - r.lam) * 0.9, 5);
      }),
      { numRuns: 60 },
    );
  });

  it('Beta(α, α) draws are in [0, 1] with mean 1/2', () => {
    const rng = new Rng(1);
    for (const a of [0.2, 0.8, 1, 3]) {
      const draws = Array.from({ length: 4000 }, () => sampleBeta(a, rng));
      expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...draws)).toBeLessThanOrEqual(1);
      expect(draws.reduce((s, v) => s + v, 0) / draws.length).toBeCloseTo(0.5, 1);
    }
  });
});

describe('crops, flips and the evaluation transform', () => {
  it('RandomResizedCrop boxes lie in the image and respect the scale range unless they fall back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 2 ** 31 }), (w, h, seed) => {
        const box = randomResizedCropBox(w, h, [0.08, 1], [3 / 4, 4 / 3], new Rng(seed));
        expect(box.x).toBeGreaterThanOrEqual(0);
        expect(box.y).toBeGreaterThanOrEqual(0);
        expect(box.w).toBeGreaterThan(0);
        expect(box.h).toBeGreaterThan(0);
        expect(box.x + box.w).toBeLessThanOrEqual(w);
        expect(box.y + box.h).toBeLessThanOrEqual(h);
      }),
    );
    const rng = new Rng(3);
    for (let i = 0; i < 200; i++) {
      const b = randomResizedCropBox(400, 300, [0.3, 0.6], [3 / 4, 4 / 3], rng);
      const frac = (b.w * b.h) / (400 * 300);
      expect(frac).toBeGreaterThan(0.28);
      expect(frac).toBeLessThan(0.62);
    }
  });

  it('a flip mirrors the image; normalisation is (x / 255 − mean) / std', () => {
    const img = gradientImage(6, 6);
    const mean = [0.5, 0.4, 0.3] as const;
    const std = [0.2, 0.25, 0.3] as const;
    const plain = new Float32Array(3 * 36);
    const flipped = new Float32Array(3 * 36);
    transformInto(img, { size: 6, mean, std, interpolation: 'bilinear', train: { hflip: 0 } }, new Rng(0), plain, 0);
    transformInto(img, { size: 6, mean, std, interpolation: 'bilinear', train: { hflip: 1 } }, new Rng(0), flipped, 0);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 6; y++) {
        for (let x = 0; x < 6; x++) {
          expect(plain[c * 36 + y * 6 + x]).toBeCloseTo((img.data[(y * 6 + x) * 3 + c]! / 255 - mean[c]!) / std[c]!, 5);
          expect(flipped[c * 36 + y * 6 + x]).toBe(plain[c * 36 + y * 6 + 5 - x]);
        }
      }
    }
  });

  it('the evaluation transform equals `volution predict`\'s (loadImage) on a decoded file', async () => {
    const img = gradientImage(57, 41);
    const path = join(tempDir('volution-aug-'), 'g.png');
    await sharp(Buffer.from(img.data), { raw: { width: 57, height: 41, channels: 3 } }).png().toFile(path);
    const prep = { inputSize: [3, 24, 24] as const, mean: [0.485, 0.456, 0.406] as const, std: [0.229, 0.224, 0.225] as const, interpolation: 'bicubic' as const, cropPct: 0.875 };
    const ref = await loadImage(path, prep);
    const ours = new Float32Array(3 * 24 * 24);
    transformInto(img, { size: 24, mean: prep.mean, std: prep.std, interpolation: 'bicubic', cropPct: 0.875 }, new Rng(0), ours, 0);
    expect(Array.from(ours)).toEqual(Array.from(ref.data));
  });
});
