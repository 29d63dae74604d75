/**
 * Images in, model input out: decode (JPEG, PNG, WebP and whatever else
 * sharp reads), then the timm/DeiT evaluation transform of a pretrained
 * config: resize the shorter side to ⌊size / crop_pct⌋ with the config's
 * interpolation, centre-crop to the input size, scale RGB to [0, 1] and
 * normalise by mean/std, as an NCHW float32 batch.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { FormatError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import type { PretrainedConfig } from '../models/registry.js';
import IMAGENET_CLASSES from './imagenet_classes.json' with { type: 'json' };

/** The evaluation transform: the parts of a PretrainedConfig it reads. */
export type Preprocessing = Pick<PretrainedConfig, 'inputSize' | 'mean' | 'std' | 'interpolation' | 'cropPct'>;

/** sharp's kernels for the interpolations pretrained configs use (cubic is Catmull-Rom, like PIL's bicubic). */
const KERNEL = { bicubic: 'cubic', bilinear: 'linear' } as const;

/** The ImageNet-1k class names, by class index (torchvision's list). */
export function imagenetClassNames(): readonly string[] {
  return IMAGENET_CLASSES;
}

/** Size after resizing the shorter side to `short`, torchvision's rule (the longer side truncated). */
function resizedSize(width: number, height: number, short: number): [number, number] {
  return width <= height ? [short, Math.floor((short * height) / width)] : [Math.floor((short * width) / height), short];
}

/**
 * Decodes one image (a path or its bytes) and applies the evaluation
 * transform. Returns a [1, 3, H, W] float32 array. `name` labels errors
 * (defaults to the path).
 */
export async function loadImage(source: string | Uint8Array, prep: Preprocessing, name = typeof source === 'string' ? source : '<buffer>'): Promise<NDArray<'float32'>> {
  const bytes = typeof source === 'string' ? await readFile(source) : source;
  const [, outH, outW] = prep.inputSize;
  let rgb: Buffer;
  try {
    const meta = await sharp(bytes).metadata();
    if (!meta.width || !meta.height) throw new Error('no image dimensions');
    // Square crops resize the shorter side (timm); other crops scale each side by 1/crop_pct.
    const [w, h] = outH === outW ? resizedSize(meta.width, meta.height, Math.floor(outH / prep.cropPct)) : [Math.floor(outW / prep.cropPct), Math.floor(outH / prep.cropPct)];
    if (w < outW || h < outH) throw new Error(`crop_pct ${prep.cropPct} above 1 is not supported`);
    rgb = await sharp(bytes)
      .toColourspace('srgb')
      .removeAlpha()
      .resize(w, h, { kernel: KERNEL[prep.interpolation], fit: 'fill' })
      .extract({ left: Math.round((w - outW) / 2), top: Math.round((h - outH) / 2), width: outW, height: outH })
      .raw()
      .toBuffer();
  } catch (err) {
    throw new FormatError(`cannot read image '${name}': ${(err as Error).message}. Give a JPEG, PNG or WebP file`, { cause: err });
  }
  const out = NDArray.float32([1, 3, outH, outW]);
  const plane = outH * outW;
  for (let c = 0; c < 3; c++) {
    const scale = 1 / (255 * prep.std[c]!);
    const shift = prep.mean[c]! / prep.std[c]!;
    for (let i = 0; i < plane; i++) out.data[c * plane + i] = rgb[3 * i + c]! * scale - shift;
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
