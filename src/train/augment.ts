/**
 * Augmentation and normalisation, from 8-bit RGB images to the model's
 * normalised NCHW float input, following torchvision/timm:
 *
 * - train: RandomResizedCrop (torchvision's sampling of area and log-aspect,
 *   ten tries, then a centre fallback), horizontal flip, normalise;
 * - eval: resize the shorter side to ⌊size / crop_pct⌋ and centre-crop (the
 *   DeiT evaluation transform, the same rules as `volution predict`);
 * - batch: Mixup / CutMix with soft targets (timm's `Mixup`, batch mode).
 *
 * Resizing is PIL's antialiased algorithm (io/image.ts). Every random draw
 * comes from the `Rng` passed in, so a batch is a pure function of its seed.
 */
import { resizeRgb } from '../io/image.js';
import type { Rng } from '../rng.js';
import type { RgbImage } from './data.js';

export type Triple = readonly [number, number, number];

/** Plain data (it crosses to the data worker). */
export interface TransformSpec {
  /** Output side: images become [3, size, size]. */
  size: number;
  mean: Triple;
  std: Triple;
  interpolation: 'bilinear' | 'bicubic';
  /** Training transform when set; evaluation transform otherwise. */
  train?: {
    /** RandomResizedCrop's range of the crop's area fraction; undefined: no crop, the whole image is resized. */
    scale?: readonly [number, number];
    /** RandomResizedCrop's range of aspect ratios (default 3/4 … 4/3). */
    ratio?: readonly [number, number];
    /** Probability of a horizontal flip. */
    hflip: number;
  };
  /** Evaluation: the centre crop's fraction of the resized image (default 1 for images already at size, else 0.875). */
  cropPct?: number;
}

export interface CropBox {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** torchvision's RandomResizedCrop.get_params. */
export function randomResizedCropBox(width: number, height: number, scale: readonly [number, number], ratio: readonly [number, number], rng: Rng): CropBox {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * rng.uniform());
    const aspect = Math.exp(logLo + (logHi - logLo) * rng.uniform());
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && h > 0 && w <= width && h <= height) return { x: rng.int(width - w + 1), y: rng.int(height - h + 1), w, h };
  }
  // Fallback: the whole image, cropped to the nearest allowed aspect ratio.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(ratio[0], ratio[1])) h = Math.round(w / Math.min(ratio[0], ratio[1]));
  else if (inRatio > Math.max(ratio[0], ratio[1])) w = Math.round(h * Math.max(ratio[0], ratio[1]));
  return { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
}

function crop(img: RgbImage, b: CropBox): RgbImage {
  if (b.x === 0 && b.y === 0 && b.w === img.width && b.h === img.height) return img;
  const out = new Uint8Array(b.w * b.h * 3);
  for (let y = 0; y < b.h; y++) out.set(img.data.subarray(((b.y + y) * img.width + b.x) * 3, ((b.y + y) * img.width + b.x + b.w) * 3), y * b.w * 3);
  return { data: out, width: b.w, height: b.h };
}

function resize(img: RgbImage, w: number, h: number, interpolation: 'bilinear' | 'bicubic'): RgbImage {
  if (w === img.width && h === img.height) return img;
  return { data: resizeRgb(img.data, img.width, img.height, w, h, interpolation), width: w, height: h };
}

/** Python's round(): halves go to the even neighbour (torchvision's CenterCrop offsets). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The evaluation transform up to normalisation: resize the shorter side, centre-crop. */
export function evalCrop(img: RgbImage, size: number, cropPct: number, interpolation: 'bilinear' | 'bicubic'): RgbImage {
  const short = Math.floor(size / cropPct);
  const [w, h] = img.width <= img.height ? [short, Math.floor((short * img.height) / img.width)] : [Math.floor((short * img.width) / img.height), short];
  const resized = resize(img, w, h, interpolation);
  return crop(resized, { x: roundHalfEven((w - size) / 2), y: roundHalfEven((h - size) / 2), w: size, h: size });
}

/**
 * Transforms one image into `out` at `offset` as normalised [3, size, size]
 * floats. Draws from `rng` only in the training transform.
 */
export function transformInto(img: RgbImage, spec: TransformSpec, rng: Rng, out: Float32Array, offset: number): void {
  const { size } = spec;
  let flip = false;
  let ready: RgbImage;
  if (spec.train) {
    const t = spec.train;
    const box = t.scale ? randomResizedCropBox(img.width, img.height, t.scale, t.ratio ?? [3 / 4, 4 / 3], rng) : { x: 0, y: 0, w: img.width, h: img.height };
    ready = resize(crop(img, box), size, size, spec.interpolation);
    flip = t.hflip > 0 && rng.uniform() < t.hflip;
  } else {
    const pct = spec.cropPct ?? (img.width === size && img.height === size ? 1 : 0.875);
    ready = evalCrop(img, size, pct, spec.interpolation);
  }
  const plane = size * size;
  const px = ready.data;
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * spec.std[c]!);
    const shift = spec.mean[c]! / spec.std[c]!;
    const base = offset + c * plane;
    for (let y = 0; y < size; y++) {
      const row = y * size;
      for (let x = 0; x < size; x++) out[base + row + x] = px[3 * (row + (flip ? size - 1 - x : x)) + c]! * scale - shift;
    }
  }
}

// ---------------------------------------------------------------- Mixup / CutMix

/** timm's Mixup options (plain data). */
export interface MixupSpec {
  /** Beta(α, α) for mixup; 0 turns mixup off (timm default 0.8 in DeiT's recipe). */
  mixupAlpha: number;
  /** Beta(α, α) for cutmix; 0 turns cutmix off (DeiT: 1.0). */
  cutmixAlpha: number;
  /** Probability of mixing a batch at all (default 1). */
  prob: number;
  /** With both on: probability of cutmix rather than mixup (default 0.5). */
  switchProb: number;
  /** Label smoothing folded into the soft targets (DeiT: 0.1). */
  smoothing: number;
  numClasses: number;
}

/** Gamma(shape, 1) by Marsaglia and Tsang's method (shape < 1 boosted). */
function gamma(shape: number, rng: Rng): number {
  if (shape < 1) return gamma(shape + 1, rng) * Math.pow(1 - rng.uniform(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng.uniform();
    if (u < 1 - 0.0331 * x * x * x * x || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A draw from Beta(α, α). */
export function sampleBeta(alpha: number, rng: Rng): number {
  const a = gamma(alpha, rng);
  const b = gamma(alpha, rng);
  return a + b > 0 ? a / (a + b) : 0.5;
}

/** Soft targets: each row is (1 − ε)·onehot + ε/K, mixed as lam · y + (1 − lam) · y[flipped batch]; rows sum to 1. */
export function mixupTargets(labels: ArrayLike<number>, numClasses: number, lam: number, smoothing: number): Float32Array {
  const b = labels.length;
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const out = new Float32Array(b * numClasses).fill(off);
  for (let i = 0; i < b; i++) {
    out[i * numClasses + labels[i]!]! += lam * (on - off);
    out[i * numClasses + labels[b - 1 - i]!]! += (1 - lam) * (on - off);
  }
  return out;
}

export interface MixResult {
  /** The batch's mixing weight of its own images (1: unmixed). */
  lam: number;
  mode: 'none' | 'mixup' | 'cutmix';
  /** Soft targets [B, K]. */
  target: Float32Array;
}

/**
 * Mixes a batch in place with its reverse (timm's batch mode): mixup
 * blends whole images, cutmix pastes a box whose area sets lam (corrected
 * to the box actually pasted after clipping to the image).
 */
export function mixBatch(x: Float32Array, shape: readonly [number, number, number, number], labels: ArrayLike<number>, spec: MixupSpec, rng: Rng): MixResult {
  const [b, c, h, w] = shape;
  let mode: MixResult['mode'] = 'none';
  let lam = 1;
  const both = spec.mixupAlpha > 0 && spec.cutmixAlpha > 0;
  if (rng.uniform() < spec.prob && (spec.mixupAlpha > 0 || spec.cutmixAlpha > 0)) {
    const cut = both ? rng.uniform() < spec.switchProb : spec.cutmixAlpha > 0;
    mode = cut ? 'cutmix' : 'mixup';
    lam = sampleBeta(cut ? spec.cutmixAlpha : spec.mixupAlpha, rng);
  }
  const image = c * h * w;
  if (mode === 'mixup') {
    const src = x.slice();
    for (let i = 0; i < b; i++) {
      const j = b - 1 - i;
      for (let k = 0; k < image; k++) x[i * image + k] = lam * src[i * image + k]! + (1 - lam) * src[j * image + k]!;
    }
  } else if (mode === 'cutmix') {
    // timm's rand_bbox: a box of side ratio sqrt(1 − lam) around a uniform centre, clipped.
    const ratio = Math.sqrt(1 - lam);
    const ch = Math.floor(h * ratio);
    const cw = Math.floor(w * ratio);
    const cy = rng.int(h);
    const cx = rng.int(w);
    const y0 = Math.min(Math.max(cy - Math.floor(ch / 2), 0), h);
    const y1 = Math.min(Math.max(cy + Math.floor(ch / 2), 0), h);
    const x0 = Math.min(Math.max(cx - Math.floor(cw / 2), 0), w);
    const x1 = Math.min(Math.max(cx + Math.floor(cw / 2), 0), w);
    const src = x.slice();
    for (let i = 0; i < b; i++) {
      const j = b - 1 - i;
      for (let ch_ = 0; ch_ < c; ch_++) {
        for (let y = y0; y < y1; y++) {
          const row = ch_ * h * w + y * w;
          for (let xx = x0; xx < x1; xx++) x[i * image + row + xx] = src[j * image + row + xx]!;
        }
      }
    }
    lam = 1 - ((y1 - y0) * (x1 - x0)) / (h * w);
  }
  return { lam, mode, target: mixupTargets(labels, spec.numClasses, lam, spec.smoothing) };
}
