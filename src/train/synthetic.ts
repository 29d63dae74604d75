/**
 * The built-in synthetic data set: 10 classes generated deterministically
 * from a seed, no download. Each image holds two textured patches on a noisy
 * background. The label combines the global arrangement (the patches side
 * by side, or stacked) with the local texture of the *first* patch (the left
 * one, or the top one) among five textures:
 *
 *   label = 5 · arrangement + texture(first patch)
 *
 * The second patch always carries a different texture, so a model must find
 * which patch comes first (global context: attention's strength) and read
 * its texture (local pattern: convolution's strength). Colours, positions,
 * sizes, periods and phases are random, which defeats a linear classifier
 * on pixels (see test/train/synthetic.test.ts).
 */
import { NDArray } from '../ir/ndarray.js';
import { Rng } from '../rng.js';

export const SYNTHETIC_CLASSES = [
  'side-by-side, horizontal stripes first',
  'side-by-side, vertical stripes first',
  'side-by-side, diagonal stripes first',
  'side-by-side, checkerboard first',
  'side-by-side, dots first',
  'stacked, horizontal stripes first',
  'stacked, vertical stripes first',
  'stacked, diagonal stripes first',
  'stacked, checkerboard first',
  'stacked, dots first',
] as const;

const TEXTURES = 5;

/** Whether texture `t` is "on" at pixel (x, y) for a given period and phase. */
function textureOn(t: number, x: number, y: number, period: number, phase: number): boolean {
  const half = period / 2;
  switch (t) {
    case 0:
      return (y + phase) % period < half;
    case 1:
      return (x + phase) % period < half;
    case 2:
      return (x + y + phase) % period < half;
    case 3:
      return (Math.floor((x + phase) / half) + Math.floor((y + phase) / half)) % 2 === 0;
    default: {
      const cx = ((x + phase) % period) - half + 0.5;
      const cy = ((y + phase) % period) - half + 0.5;
      return cx * cx + cy * cy < (period * period) / 8;
    }
  }
}

export interface SyntheticOptions {
  /** Image side in pixels (default 32). */
  size?: number;
  /** Number of samples (default 10 000). */
  length?: number;
  seed?: number;
}

export class SyntheticDataset {
  readonly size: number;
  readonly length: number;
  readonly seed: number;
  readonly classes: readonly string[] = SYNTHETIC_CLASSES;

  constructor(opts: SyntheticOptions = {}) {
    this.size = opts.size ?? 32;
    this.length = opts.length ?? 10_000;
    this.seed = opts.seed ?? 0;
  }

  /** Sample `i`: a [3, size, size] float32 image in [0, 1] and its label. Pure function of (seed, i). */
  get(i: number): { image: NDArray<'float32'>; label: number } {
    const rng = new Rng((this.seed * 0x9e3779b1 + i * 0x85ebca6b) >>> 0);
    const s = this.size;
    const label = rng.int(10);
    const stacked = label >= TEXTURES;
    const firstTexture = label % TEXTURES;
    const secondTexture = (firstTexture + 1 + rng.int(TEXTURES - 1)) % TEXTURES;

    // Two patches in the two halves along the arrangement axis, aligned across it
    // (a shared centre ± a small jitter) so that the arrangement is unambiguous.
    const patch = () => Math.max(4, Math.floor(s * (0.3 + 0.12 * rng.uniform())));
    const place = (extent: number, lo: number, hi: number) => lo + rng.int(Math.max(1, hi - lo - extent + 1));
    const centre = s * (0.3 + 0.4 * rng.uniform());
    const rects = [0, 1].map((k) => {
      const w = patch();
      const h = patch();
      const along = stacked ? h : w;
      const across = stacked ? w : h;
      const a = place(along, k === 0 ? 0 : Math.ceil(s / 2), k === 0 ? Math.floor(s / 2) : s);
      const jitter = Math.round((rng.uniform() - 0.5) * s * 0.1);
      const b = Math.min(s - across, Math.max(0, Math.round(centre - across / 2) + jitter));
      return stacked ? { x: b, y: a, w, h } : { x: a, y: b, w, h };
    });

    const color = () => [rng.uniform(), rng.uniform(), rng.uniform()];
    const bg = color();
    const image = NDArray.float32([3, s, s]);
    const d = image.data;
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        for (let c = 0; c < 3; c++) d[c * s * s + y * s + x] = Math.min(1, Math.max(0, bg[c]! + 0.15 * (rng.uniform() - 0.5)));
      }
    }
    [firstTexture, secondTexture].forEach((t, k) => {
      const r = rects[k]!;
      const on = color();
      const off = color();
      const period = 4 + rng.int(3);
      const phase = rng.int(period);
      for (let y = r.y; y < Math.min(s, r.y + r.h); y++) {
        for (let x = r.x; x < Math.min(s, r.x + r.w); x++) {
          const col = textureOn(t, x, y, period, phase) ? on : off;
          for (let c = 0; c < 3; c++) d[c * s * s + y * s + x] = col[c]!;
        }
      }
    });
    return { image, label };
  }
}
