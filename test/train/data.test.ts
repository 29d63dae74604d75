/** Data sets: CIFAR binary files (generated here), image folders of generated PNGs, the --data syntax. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';
import { ConfigError, FormatError } from '../../src/errors.js';
import { CifarDataset, type ImageFolder, openDataset, parseCifar, parseDataSpec } from '../../src/train/data.js';

const tmp = (p = 'volution-data-') => tempDir(p);

/** n CIFAR records: label bytes, then the R, G, B planes filled with (label, index, 7). */
function cifarBytes(n: number, kind: 'cifar10' | 'cifar100', label = (i: number) => i % 10): Uint8Array {
  const lb = kind === 'cifar10' ? 1 : 2;
  const rec = lb + 3072;
  const out = new Uint8Array(n * rec);
  for (let i = 0; i < n; i++) {
    const at = i * rec;
    if (kind === 'cifar100') out[at] = label(i) % 20; // coarse
    out[at + lb - 1] = label(i);
    out.fill(label(i), at + lb, at + lb + 1024);
    out.fill(i, at + lb + 1024, at + lb + 2048);
    out.fill(7, at + lb + 2048, at + rec);
    out[at + lb + 5] = 200; // red at pixel (5, 0)
  }
  return out;
}

describe('CIFAR binary format', () => {
  it('parses CIFAR-10 and CIFAR-100 records (fine labels)', () => {
    const ten = parseCifar(cifarBytes(3, 'cifar10'), 'cifar10');
    expect(Array.from(ten.labels)).toEqual([0, 1, 2]);
    expect(ten.images.length).toBe(3 * 3072);
    expect(ten.images[3072 + 1024]).toBe(1);
    const hundred = parseCifar(cifarBytes(4, 'cifar100', (i) => 40 + i), 'cifar100');
    expect(Array.from(hundred.labels)).toEqual([40, 41, 42, 43]);
  });

  it('a truncated file or a wrong variant is a FormatError that says so', () => {
    const bytes = cifarBytes(3, 'cifar10');
    expect(() => parseCifar(bytes.subarray(0, bytes.length - 100), 'cifar10', 'data_batch_1.bin')).toThrow(FormatError);
    expect(() => parseCifar(bytes.subarray(0, bytes.length - 100), 'cifar10', 'data_batch_1.bin')).toThrow(/data_batch_1\.bin.*not a whole number of 3073-byte records.*truncated/);
    expect(() => parseCifar(new Uint8Array(0), 'cifar10')).toThrow(FormatError);
    expect(() => parseCifar(cifarBytes(2, 'cifar10', () => 12), 'cifar10')).toThrow(/label 12/);
  });

  it('opens a CIFAR-10 directory (cifar:<dir>): splits, class names, HWC pixels; a truncated file fails on use', () => {
    const root = tmp();
    const dir = join(root, 'cifar-10-batches-bin');
    mkdirSync(dir);
    for (let k = 1; k <= 5; k++) writeFileSync(join(dir, `data_batch_${k}.bin`), cifarBytes(4, 'cifar10'));
    writeFileSync(join(dir, 'test_batch.bin'), cifarBytes(6, 'cifar10', (i) => 9 - i));
    writeFileSync(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n');
    const spec = parseDataSpec(`cifar:${root}`);
    expect(spec).toEqual({ kind: 'cifar10', path: dir });
    const train = openDataset(spec, 'train') as CifarDataset;
    const val = openDataset(spec, 'val') as CifarDataset;
    expect(train.length).toBe(20);
    expect(val.length).toBe(6);
    expect(train.classes[9]).toBe('truck');
    const s = val.get(2);
    expect(s.label).toBe(7);
    expect([s.image.width, s.image.height]).toEqual([32, 32]);
    expect(Array.from(s.image.data.subarray(0, 3))).toEqual([7, 2, 7]);
    expect(s.image.data[5 * 3]).toBe(200);
    writeFileSync(join(dir, 'test_batch.bin'), cifarBytes(6, 'cifar10').subarray(0, 5000));
    expect(() => new CifarDataset(dir, 'cifar10', 'val').get(0)).toThrow(/test_batch\.bin.*truncated/);
  });

  it('opens a CIFAR-100 directory and names missing files', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'train.bin'), cifarBytes(5, 'cifar100', (i) => 90 + i));
    writeFileSync(join(dir, 'test.bin'), cifarBytes(2, 'cifar100'));
    const spec = parseDataSpec(`cifar:${dir}`);
    expect(spec.kind).toBe('cifar100');
    const train = openDataset(spec, 'train');
    expect(train.classes.length).toBe(100);
    expect((train.get(4) as { label: number }).label).toBe(94);
    expect(() => parseDataSpec(`cifar10:${dir}`) && openDataset(parseDataSpec(`cifar10:${dir}`), 'train')).toThrow(/missing data_batch_1\.bin/);
  });
});

async function png(path: string, r: number, g: number, b: number, w = 20, h = 12): Promise<void> {
  await sharp({ create: { width: w, height: h, channels: 3, background: { r, g, b } } }).png().toFile(path);
}

describe('image folders', () => {
  it('<dir>/<class>/*.png: sorted classes, a fixed held-out tenth per class, decoded RGB', async () => {
    const root = tmp();
    for (const [c, [r, g, b]] of [['zebra', [10, 20, 30]], ['ant', [200, 100, 0]]] as const) {
      mkdirSync(join(root, c));
      for (let i = 0; i < 10; i++) await png(join(root, c, `${i}.png`), r, g, b);
    }
    writeFileSync(join(root, 'ant', 'notes.txt'), 'not an image');
    const spec = parseDataSpec(root);
    const train = openDataset(spec, 'train') as ImageFolder;
    const val = openDataset(spec, 'val') as ImageFolder;
    expect(train.classes).toEqual(['ant', 'zebra']);
    expect(train.length).toBe(18);
    expect(val.length).toBe(2);
    expect(new Set(val.items.map((i) => i.label))).toEqual(new Set([0, 1]));
    // the split is the same on every run
    expect((openDataset(spec, 'val') as ImageFolder).items).toEqual(val.items);
    const s = await train.get(train.items.findIndex((i) => i.label === 1));
    expect([s.image.width, s.image.height]).toEqual([20, 12]);
    expect(Array.from(s.image.data.subarray(0, 3))).toEqual([10, 20, 30]);
  });

  it('<dir>/train and <dir>/val; training images are downscaled to maxSide on decode', async () => {
    const root = tmp();
    for (const split of ['train', 'val']) {
      for (const c of ['a', 'b', 'c']) {
        mkdirSync(join(root, split, c), { recursive: true });
        await png(join(root, split, c, 'x.png'), 0, 128, 255, 80, 40);
      }
    }
    const spec = { ...parseDataSpec(root), maxSide: 20 };
    const train = openDataset(spec, 'train');
    const val = openDataset(spec, 'val');
    expect(train.length).toBe(3);
    expect(val.length).toBe(3);
    const t = await train.get(0);
    expect([t.image.width, t.image.height]).toEqual([40, 20]);
    const v = await val.get(2);
    expect([v.image.width, v.image.height, v.label]).toEqual([80, 40, 2]);
  });

  it('an unreadable image is a FormatError naming the file', async () => {
    const root = tmp();
    for (const c of ['a', 'b']) {
      mkdirSync(join(root, c));
      writeFileSync(join(root, c, 'bad.jpg'), 'not a jpeg');
    }
    const ds = openDataset(parseDataSpec(root), 'train');
    await expect(Promise.resolve(ds.get(0))).rejects.toThrow(/cannot read image '.*bad\.jpg'/);
  });
});

describe('--data', () => {
  it('parses synthetic options and rejects what it cannot use', () => {
    expect(parseDataSpec('synthetic')).toMatchObject({ kind: 'synthetic', size: 32, train: 20000, val: 2000, seed: 0 });
    expect(parseDataSpec('synthetic:size=16,train=100,val=10,seed=3')).toMatchObject({ size: 16, train: 100, val: 10, seed: 3 });
    expect(() => parseDataSpec('synthetic:colour=red')).toThrow(ConfigError);
    expect(() => parseDataSpec('synthetic:size=4')).toThrow(/at least 8/);
    expect(() => parseDataSpec('/no/such/dir')).toThrow(/neither 'synthetic'/);
    expect(() => parseDataSpec(`cifar:${tmp()}`)).toThrow(/neither CIFAR-10/);
    const one = tmp();
    mkdirSync(join(one, 'only'));
    expect(() => openDataset(parseDataSpec(one), 'train')).toThrow(/one sub-folder per class/);
  });
});
