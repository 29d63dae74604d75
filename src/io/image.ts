/**
 * Images in, model input out: decode with sharp (JPEG, PNG, WebP, and the
 * other formats it reads), then the timm/DeiT evaluation transform of a
 * pretrained config: resize the shorter side to ⌊size / crop_pct⌋ with the
 * config's interpolation, centre-crop to the input size, scale RGB to [0, 1]
 * and normalise by mean/std, as an NCHW float32 batch.
 *
 * The resize is PIL's algorithm, reimplemented, not sharp's: the published
 * accuracies were measured with torchvision on PIL images, and libvips
 * places pixel centres differently when enlarging (3–4 grey levels off on
 * average), while this matches PIL to the bit.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { ConfigError, FormatError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import type { PretrainedConfig } from '../models/registry.js';
import IMAGENET_CLASSES from './imagenet_classes.json' with { type: 'json' };

/** The evaluation transform: the parts of a PretrainedConfig it reads. */
export type Preprocessing = Pick<PretrainedConfig, 'inputSize' | 'mean' | 'std' | 'interpolation' | 'cropPct'>;

/** PIL's fixed-point precision for 8-bit resampling (Resample.c: 32 − 8 − 2 bits). */
const PRECISION_BITS = 22;

interface ResampleFilter {
  readonly support: number;
  weight(x: number): number;
}

/** PIL's resampling filters: the triangle, and the cubic convolution kernel with a = −0.5. */
const FILTERS: Readonly<Record<'bilinear' | 'bicubic', ResampleFilter>> = {
  bilinear: { support: 1, weight: (x) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
};

/** Per output pixel: the first input pixel, the tap count, and fixed-point weights (PIL's precompute_coeffs). */
function coefficients(inSize: number, outSize: number, filter: ResampleFilter): { first: Int32Array; taps: Int32Array; weights: Int32Array; stride: number } {
  const scale = inSize / outSize;
  // Downsampling widens the filter (antialiasing); upsampling keeps it.
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const taps = new Int32Array(outSize);
  const weights = new Int32Array(outSize * stride);
  const raw = new Float64Array(stride);
  const inv = 1 / filterScale;
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    let total = 0;
    for (let i = 0; i < n; i++) total += raw[i] = filter.weight((i + lo - center + 0.5) * inv);
    for (let i = 0; i < n; i++) {
      const w = (total === 0 ? raw[i]! : raw[i]! / total) * (1 << PRECISION_BITS);
      weights[o * stride + i] = Math.trunc(w < 0 ? w - 0.5 : w + 0.5);
    }
    first[o] = lo;
    taps[o] = n;
  }
  return { first, taps, weights, stride };
}

/** One resampling pass over RGB pixels: along the rows (`horizontal`) or the columns. */
function resampleAxis(src: Uint8Array, width: number, height: number, outWidth: number, outHeight: number, filter: ResampleFilter, horizontal: boolean): Uint8Array {
  const out = new Uint8Array(outWidth * outHeight * 3);
  const c = horizontal ? coefficients(width, outWidth, filter) : coefficients(height, outHeight, filter);
  const step = horizontal ? 3 : 3 * width;
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const o = horizontal ? x : y;
      const base = horizontal ? 3 * (y * width + c.first[o]!) : 3 * (c.first[o]! * width + x);
      for (let ch = 0; ch < 3; ch++) {
        let acc = half;
        for (let i = 0; i < c.taps[o]!; i++) acc += src[base + i * step + ch]! * c.weights[o * c.stride + i]!;
        out[3 * (y * outWidth + x) + ch] = Math.min(255, Math.max(0, Math.floor(acc / (1 << PRECISION_BITS))));
      }
    }
  }
  return out;
}

/**
 * Resizes 8-bit RGB pixels exactly as PIL's `Image.resize` does (what
 * torchvision's Resize runs on PIL images): separable, antialiased when
 * shrinking, fixed-point, width first, rounded to 8 bits after each pass.
 */
export function resizeRgb(pixels: Uint8Array, width: number, height: number, outWidth: number, outHeight: number, interpolation: 'bicubic' | 'bilinear'): Uint8Array {
  const filter = FILTERS[interpolation];
  const wide = outWidth === width ? pixels : resampleAxis(pixels, width, height, outWidth, height, filter, true);
  return outHeight === height ? wide : resampleAxis(wide, outWidth, height, outWidth, outHeight, filter, false);
}

/** The ImageNet-1k class names, by class index (torchvision's list). */
export function imagenetClassNames(): readonly string[] {
  return IMAGENET_CLASSES;
}

/** Size after resizing the shorter side to `short`, torchvision's rule (the longer side truncated). */
function resizedSize(width: number, height: number, short: number): [number, number] {
  return width <= height ? [short, Math.floor((short * height) / width)] : [Math.floor((short * width) / height), short];
}

/** Python's round(): halves go to the even neighbour (torchvision's CenterCrop offsets). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Decodes one image (a path or its bytes) and applies the evaluation
 * transform. Returns a [1, 3, H, W] float32 array. `name` labels errors
 * (defaults to the path).
 */
export async function loadImage(source: string | Uint8Array, prep: Preprocessing, name = typeof source === 'string' ? source : '<buffer>'): Promise<NDArray<'float32'>> {
  const [, outH, outW] = prep.inputSize;
  let decoded: { data: Buffer; info: { width: number; height: number } };
  try {
    decoded = await sharp(typeof source === 'string' ? await readFile(source) : source).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new FormatError(`cannot read image '${name}': ${(err as Error).message}. Give a JPEG, PNG or WebP file`, { cause: err });
  }
  const { width, height } = decoded.info;
  // Square crops resize the shorter side (timm); other crops scale each side by 1/crop_pct.
  const [w, h] = outH === outW ? resizedSize(width, height, Math.floor(outH / prep.cropPct)) : [Math.floor(outW / prep.cropPct), Math.floor(outH / prep.cropPct)];
  if (w < outW || h < outH) throw new ConfigError(`crop_pct ${prep.cropPct} leaves a ${w}×${h} image, smaller than the ${outW}×${outH} crop`);
  const resized = resizeRgb(decoded.data, width, height, w, h, prep.interpolation);
  const left = roundHalfEven((w - outW) / 2);
  const top = roundHalfEven((h - outH) / 2);
  const out = NDArray.float32([1, 3, outH, outW]);
  const plane = outH * outW;
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * prep.std[c]!);
    const shift = prep.mean[c]! / prep.std[c]!;
    for (let y = 0; y < outH; y++) {
      for (let x = 0; x < outW; x++) out.data[c * plane + y * outW + x] = resized[3 * ((top + y) * w + left + x) + c]! * scale - shift;
    }
  }
  return out;
}

/** Loads several images into one [N, 3, H, W] batch. */
export async function loadImages(paths: readonly string[], prep: Preprocessing): Promise<NDArray<'float32'>> {
  const [, h, w] = prep.inputSize;
  const batch = NDArray.float32([paths.length, 3, h, w]);
  const size = 3 * h * w;
  for (let i = 0; i < paths.length; i++) batch.data.set((await loadImage(paths[i]!, prep)).data, i * size);
  return batch;
}
