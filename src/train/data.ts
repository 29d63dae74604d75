/**
 * Data sets for training and validation. Every data set yields 8-bit RGB
 * images (row-major, interleaved: the layout sharp decodes to) and integer
 * labels; augmentation and normalisation happen later (augment.ts).
 *
 * Three sources, named by one string (`--data`):
 *
 *   synthetic[:k=v,…]    the built-in synthetic set (synthetic.ts), generated from a seed:
 *                        options size (32), train (20000), val (2000), seed (0)
 *   cifar:<dir>          the CIFAR-10 or CIFAR-100 binary version (cifar-10-batches-bin/
 *                        data_batch_{1..5}.bin + test_batch.bin, or cifar-100-binary/
 *                        train.bin + test.bin); cifar10:/cifar100: force the variant
 *   <dir>                an image folder: <dir>/<class>/*.jpg (PNG, WebP, … anything sharp
 *                        decodes), or <dir>/train/<class>/… with <dir>/val/<class>/…; without
 *                        a val folder a fixed, seeded tenth of each class is held out
 *
 * A data set is described by a serialisable `DataSpec`, so the data worker
 * (loader.ts) can open the same data set in its own thread.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import sharp from 'sharp';
import { ConfigError, FormatError } from '../errors.js';
import { Rng } from '../rng.js';
import { SYNTHETIC_CLASSES, SyntheticDataset } from './synthetic.js';

/** An 8-bit RGB image, row-major with interleaved channels (HWC). */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export interface Sample {
  image: RgbImage;
  label: number;
}

export interface Dataset {
  /** A short description, e.g. 'CIFAR-10 train (50000 images)'. */
  readonly description: string;
  readonly length: number;
  readonly classes: readonly string[];
  /** Side of the images when they are all square and the same size (synthetic, CIFAR). */
  readonly nativeSize?: number;
  get(i: number): Sample | Promise<Sample>;
}

export type DataKind = 'synthetic' | 'cifar10' | 'cifar100' | 'folder';

/** What `--data` names, parsed. Plain data: it crosses to the data worker. */
export interface DataSpec {
  kind: DataKind;
  /** Directory (cifar, folder). */
  path?: string;
  /** Synthetic options. */
  size?: number;
  train?: number;
  val?: number;
  seed?: number;
  /** Image folders without a val folder: the held-out fraction of each class (default 0.1). */
  valFraction?: number;
  /** Image folders, train split: decoded images are downscaled to this shorter side (bounds the cache). */
  maxSide?: number;
  /** Image folders: decoded-image cache budget in MB (default 1024). */
  cacheMb?: number;
}

export type Split = 'train' | 'val';

/** The defaults of the synthetic set as the training command uses it. */
export const SYNTHETIC_DEFAULTS = { size: 32, train: 20_000, val: 2_000, seed: 0 } as const;

/** Offset of the validation indices of the synthetic set: disjoint from any train index. */
const SYNTHETIC_VAL_OFFSET = 2 ** 30;

/** Parses `--data`: 'synthetic[:size=32,train=20000,…]', 'cifar:<dir>', 'cifar10:<dir>', 'cifar100:<dir>' or a directory. */
export function parseDataSpec(text: string): DataSpec {
  const t = text.trim();
  if (t === 'synthetic' || t.startsWith('synthetic:')) {
    const spec: DataSpec = { kind: 'synthetic', ...SYNTHETIC_DEFAULTS };
    const opts = t.slice('synthetic'.length + 1);
    for (const kv of opts ? opts.split(',') : []) {
      const [k, v] = kv.split('=').map((s) => s.trim());
      const n = Number(v);
      if (!['size', 'train', 'val', 'seed'].includes(k ?? '') || v === undefined || !Number.isSafeInteger(n) || n < 0) {
        throw new ConfigError(`--data synthetic: bad option '${kv}' (options: size, train, val, seed as whole numbers, e.g. synthetic:size=32,train=20000,val=2000,seed=0)`);
      }
      (spec as unknown as Record<string, number>)[k!] = n;
    }
    if (spec.size! < 8) throw new ConfigError(`--data synthetic: size must be at least 8 pixels, got ${spec.size}`);
    if (spec.train! < 1 || spec.val! < 1) throw new ConfigError('--data synthetic: train and val must hold at least one sample');
    return spec;
  }
  const m = /^(cifar|cifar10|cifar100):(.+)$/.exec(t);
  if (m) {
    const path = m[2]!;
    if (!existsSync(path) || !statSync(path).isDirectory()) throw new ConfigError(`--data ${m[1]}: '${path}' is not a directory (give the folder holding the CIFAR binary files)`);
    const kind = m[1] === 'cifar' ? detectCifar(path) : (m[1] as 'cifar10' | 'cifar100');
    return { kind, path: cifarDir(path, kind) };
  }
  if (existsSync(t) && statSync(t).isDirectory()) return { kind: 'folder', path: t, valFraction: 0.1 };
  throw new ConfigError(`--data: '${text}' is neither 'synthetic', 'cifar:<dir>' nor an existing image folder (<dir>/<class>/*.jpg)`);
}

/** A DataSpec as the string `parseDataSpec` reads. */
export function formatDataSpec(s: DataSpec): string {
  if (s.kind === 'synthetic') return `synthetic:size=${s.size},train=${s.train},val=${s.val},seed=${s.seed}`;
  if (s.kind === 'folder') return s.path!;
  return `${s.kind}:${s.path}`;
}

/** Opens one split of a data set. */
export function openDataset(spec: DataSpec, split: Split): Dataset {
  switch (spec.kind) {
    case 'synthetic':
      return new SyntheticImages(spec, split);
    case 'cifar10':
    case 'cifar100':
      return new CifarDataset(spec.path!, spec.kind, split);
    case 'folder':
      return openImageFolder(spec, split);
    default:
      throw new ConfigError(`unknown data kind '${String(spec.kind)}'`);
  }
}

// ------------------------------------------------------------------ synthetic

/** The synthetic set as 8-bit images; validation samples come from indices disjoint from training's. */
export class SyntheticImages implements Dataset {
  readonly description: string;
  readonly length: number;
  readonly classes = SYNTHETIC_CLASSES;
  readonly nativeSize: number;
  private readonly gen: SyntheticDataset;
  private readonly offset: number;
  /** Generated images, kept: a sample is a pure function of (seed, index). */
  private readonly cache: (Uint8Array | undefined)[];
  private readonly labels: Uint8Array;

  constructor(spec: DataSpec, split: Split) {
    const size = spec.size ?? SYNTHETIC_DEFAULTS.size;
    this.length = (split === 'train' ? spec.train : spec.val) ?? SYNTHETIC_DEFAULTS[split];
    this.offset = split === 'train' ? 0 : SYNTHETIC_VAL_OFFSET;
    this.gen = new SyntheticDataset({ size, seed: spec.seed ?? 0, length: SYNTHETIC_VAL_OFFSET * 2 });
    this.nativeSize = size;
    this.cache = new Array(this.length);
    this.labels = new Uint8Array(this.length);
    this.description = `synthetic ${split} (${this.length} images ${size}×${size}, seed ${spec.seed ?? 0})`;
  }

  get(i: number): Sample {
    let px = this.cache[i];
    if (!px) {
      const { image, label } = this.gen.get(this.offset + i);
      px = toRgb8(image.data as Float32Array, this.nativeSize, this.nativeSize);
      this.cache[i] = px;
      this.labels[i] = label;
    }
    return { image: { data: px, width: this.nativeSize, height: this.nativeSize }, label: this.labels[i]! };
  }
}

/** [3, H, W] floats in [0, 1] → 8-bit HWC. */
function toRgb8(chw: Float32Array, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  const plane = w * h;
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = Math.round(Math.min(1, Math.max(0, chw[c * plane + p]!)) * 255);
  return out;
}

// ---------------------------------------------------------------------- CIFAR

const CIFAR_IMAGE_BYTES = 3 * 32 * 32;

/** The files of each CIFAR variant's binary distribution. */
const CIFAR_FILES = {
  cifar10: { train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'], val: ['test_batch.bin'], labelBytes: 1, names: 'batches.meta.txt', classes: 10, sub: 'cifar-10-batches-bin' },
  cifar100: { train: ['train.bin'], val: ['test.bin'], labelBytes: 2, names: 'fine_label_names.txt', classes: 100, sub: 'cifar-100-binary' },
} as const;

function detectCifar(path: string): 'cifar10' | 'cifar100' {
  for (const kind of ['cifar10', 'cifar100'] as const) {
    const f = CIFAR_FILES[kind];
    if (existsSync(join(path, f.val[0])) || existsSync(join(path, f.sub, f.val[0]))) return kind;
  }
  throw new ConfigError(`--data cifar: '${path}' holds neither CIFAR-10 (data_batch_1.bin … test_batch.bin) nor CIFAR-100 (train.bin, test.bin) binary files`);
}

function cifarDir(path: string, kind: 'cifar10' | 'cifar100'): string {
  const f = CIFAR_FILES[kind];
  return existsSync(join(path, f.val[0])) ? path : join(path, f.sub);
}

export interface CifarRecords {
  /** N × 3072 bytes: each image's red, green and blue 32×32 planes. */
  images: Uint8Array;
  labels: Uint8Array;
}

/**
 * Parses CIFAR binary records: per image, the label byte(s) (CIFAR-100:
 * coarse, then fine; the fine label is used) and 3072 pixel bytes. A file
 * that is not a whole number of records, or holds an out-of-range label,
 * throws a FormatError.
 */
export function parseCifar(bytes: Uint8Array, kind: 'cifar10' | 'cifar100', name = '<buffer>'): CifarRecords {
  const f = CIFAR_FILES[kind];
  const record = f.labelBytes + CIFAR_IMAGE_BYTES;
  const label = kind === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100';
  if (bytes.length === 0 || bytes.length % record !== 0) {
    throw new FormatError(`'${name}' is not a ${label} binary file: its ${bytes.length} bytes are not a whole number of ${record}-byte records (${Math.floor(bytes.length / record)} records and ${bytes.length % record} bytes left over; truncated download?)`);
  }
  const n = bytes.length / record;
  const images = new Uint8Array(n * CIFAR_IMAGE_BYTES);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * record;
    const l = bytes[at + f.labelBytes - 1]!;
    if (l >= f.classes) throw new FormatError(`'${name}': record ${i} has label ${l}, outside 0…${f.classes - 1}: not a ${label} file (CIFAR-10 records have 1 label byte, CIFAR-100 records 2)`);
    labels[i] = l;
    images.set(bytes.subarray(at + f.labelBytes, at + record), i * CIFAR_IMAGE_BYTES);
  }
  return { images, labels };
}

export class CifarDataset implements Dataset {
  readonly description: string;
  readonly length: number;
  readonly classes: readonly string[];
  readonly nativeSize = 32;
  private records: CifarRecords | undefined;
  private readonly files: string[];

  constructor(
    readonly dir: string,
    readonly kind: 'cifar10' | 'cifar100',
    split: Split,
  ) {
    const f = CIFAR_FILES[kind];
    this.files = f[split].map((n) => join(dir, n));
    const missing = this.files.filter((p) => !existsSync(p));
    if (missing.length) throw new ConfigError(`${kind}: missing ${missing.map((p) => basename(p)).join(', ')} in '${dir}'`);
    const record = f.labelBytes + CIFAR_IMAGE_BYTES;
    this.length = this.files.reduce((n, p) => n + Math.floor(statSync(p).size / record), 0);
    const namesFile = join(dir, f.names);
    const names = existsSync(namesFile) ? readFileSync(namesFile, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter(Boolean) : [];
    this.classes = names.length === f.classes ? names : Array.from({ length: f.classes }, (_, i) => String(i));
    this.description = `${kind === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100'} ${split} (${this.length} images, ${dir})`;
  }

  /** Reads and checks every file of the split (on first use). */
  load(): CifarRecords {
    if (!this.records) {
      const parts = this.files.map((p) => parseCifar(new Uint8Array(readFileSync(p)), this.kind, p));
      const n = parts.reduce((s, p) => s + p.labels.length, 0);
      const images = new Uint8Array(n * CIFAR_IMAGE_BYTES);
      const labels = new Uint8Array(n);
      let at = 0;
      for (const p of parts) {
        images.set(p.images, at * CIFAR_IMAGE_BYTES);
        labels.set(p.labels, at);
        at += p.labels.length;
      }
      this.records = { images, labels };
    }
    return this.records;
  }

  get(i: number): Sample {
    const { images, labels } = this.load();
    const planes = images.subarray(i * CIFAR_IMAGE_BYTES, (i + 1) * CIFAR_IMAGE_BYTES);
    const data = new Uint8Array(CIFAR_IMAGE_BYTES);
    for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) data[p * 3 + c] = planes[c * 1024 + p]!;
    return { image: { data, width: 32, height: 32 }, label: labels[i]! };
  }
}

// --------------------------------------------------------------- image folder

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.bmp']);

function classDirs(root: string): string[] {
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
    .map((d) => d.name)
    .sort();
}

function imagesIn(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** The split folder under an image-folder root, if it has one. */
function splitDir(root: string, split: Split): string | undefined {
  const names = split === 'train' ? ['train'] : ['val', 'validation', 'test'];
  return names.map((n) => join(root, n)).find((p) => existsSync(p) && statSync(p).isDirectory());
}

function openImageFolder(spec: DataSpec, split: Split): ImageFolder {
  const root = spec.path!;
  const trainDir = splitDir(root, 'train');
  const valDir = splitDir(root, 'val');
  if (trainDir && valDir) {
    const classes = classDirs(trainDir);
    const items = (dir: string) => {
      const own = classDirs(dir);
      const stray = own.filter((c) => !classes.includes(c));
      if (stray.length) throw new ConfigError(`image folder '${root}': ${basename(dir)}/ has classes that train/ lacks: ${stray.slice(0, 5).join(', ')}`);
      return own.flatMap((c) => imagesIn(join(dir, c)).map((p) => ({ path: p, label: classes.indexOf(c) })));
    };
    return new ImageFolder(`image folder ${split} (${split === 'train' ? trainDir : valDir})`, classes, items(split === 'train' ? trainDir : valDir), spec, split);
  }
  const classes = classDirs(root);
  if (classes.length < 2) throw new ConfigError(`image folder '${root}': expected one sub-folder per class (<dir>/<class>/*.jpg) or train/ and val/ folders; found ${classes.length} class folder${classes.length === 1 ? '' : 's'}`);
  const fraction = spec.valFraction ?? 0.1;
  const items: { path: string; label: number }[] = [];
  classes.forEach((c, label) => {
    const files = imagesIn(join(root, c));
    // A fixed, seeded choice per class: the same files are held out on every run.
    const order = new Rng(hashString(c)).shuffle(files.map((_, i) => i));
    const nVal = files.length > 1 ? Math.max(1, Math.round(files.length * fraction)) : 0;
    const held = new Set(order.slice(0, nVal));
    files.forEach((p, i) => {
      if (held.has(i) === (split === 'val')) items.push({ path: p, label });
    });
  });
  return new ImageFolder(`image folder ${split} (${root}, ${Math.round(fraction * 100)}% of each class held out for val)`, classes, items, spec, split);
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A least-recently-used cache bounded in bytes. */
class ByteLru<V extends { data: Uint8Array }> {
  private readonly map = new Map<number, V>();
  private bytes = 0;
  constructor(private readonly budget: number) {}

  get(k: number): V | undefined {
    const v = this.map.get(k);
    if (v) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  set(k: number, v: V): void {
    if (v.data.length > this.budget) return;
    this.map.set(k, v);
    this.bytes += v.data.length;
    for (const [old, ov] of this.map) {
      if (this.bytes <= this.budget) break;
      this.map.delete(old);
      this.bytes -= ov.data.length;
    }
  }
}

/**
 * Images decoded with sharp (in libvips' own threads, so decoding overlaps
 * with everything else), kept in a byte-bounded cache. Training images are
 * downscaled on decode to `maxSide` on their shorter side when larger;
 * validation images are kept at full size so the evaluation transform is
 * exactly the one `volution predict` applies.
 */
export class ImageFolder implements Dataset {
  readonly length: number;
  private readonly cache: ByteLru<RgbImage>;
  private readonly inflight = new Map<number, Promise<RgbImage>>();

  constructor(
    readonly description: string,
    readonly classes: readonly string[],
    readonly items: readonly { path: string; label: number }[],
    private readonly spec: DataSpec,
    private readonly split: Split,
  ) {
    if (items.length === 0) throw new ConfigError(`${description}: no images (${[...IMAGE_EXTENSIONS].join(', ')})`);
    this.length = items.length;
    this.description = `${description}: ${items.length} images, ${classes.length} classes`;
    this.cache = new ByteLru((spec.cacheMb ?? 1024) * 2 ** 20);
  }

  async get(i: number): Promise<Sample> {
    const { label } = this.items[i]!;
    const cached = this.cache.get(i);
    if (cached) return { image: cached, label };
    let p = this.inflight.get(i);
    if (!p) {
      p = this.decode(i).finally(() => this.inflight.delete(i));
      this.inflight.set(i, p);
    }
    const image = await p;
    this.cache.set(i, image);
    return { image, label };
  }

  private async decode(i: number): Promise<RgbImage> {
    const { path } = this.items[i]!;
    try {
      // No EXIF auto-rotation: torchvision's loader (PIL) does not apply it either.
      let img = sharp(await readFile(path)).toColourspace('srgb').removeAlpha();
      const side = this.split === 'train' ? this.spec.maxSide : undefined;
      if (side) img = img.resize({ width: side, height: side, fit: 'outside', withoutEnlargement: true });
      const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
      return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
    } catch (err) {
      throw new FormatError(`cannot read image '${path}': ${(err as Error).message}`, { cause: err });
    }
  }
}
