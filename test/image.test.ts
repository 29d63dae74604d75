import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../src/errors.js';
import { imagenetClassNames, loadImage, loadImages, resizeRgb } from '../src/io/image.js';
import { IMAGENET_MEAN, IMAGENET_STD, imagenetPretrained } from '../src/models/registry.js';
import { tempDir } from './cli/run.js';

/** An RGB image as encoded bytes, pixel (x, y) coloured by `colour`. */
async function encode(width: number, height: number, colour: (x: number, y: number) => [number, number, number], format: 'png' | 'jpeg' | 'webp' = 'png'): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) raw.set(colour(x, y), 3 * (y * width + x));
  const img = sharp(raw, { raw: { width, height, channels: 3 } });
  return (format === 'png' ? img.png() : format === 'jpeg' ? img.jpeg({ quality: 95 }) : img.webp({ lossless: true })).toBuffer();
}

const prep = imagenetPretrained({ inputSize: [3, 32, 32], cropPct: 0.8 });

describe('loadImage', () => {
  it('normalises by mean and std, channel-major', async () => {
    const x = await loadImage(await encode(50, 40, () => [255, 128, 0]), prep);
    expect(x.shape).toEqual([1, 3, 32, 32]);
    const expected = [255, 128, 0].map((v, c) => (v / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!);
    for (let c = 0; c < 3; c++) for (let i = 0; i < 32 * 32; i++) expect(x.data[c * 1024 + i]).toBeCloseTo(expected[c]!, 5);
  });

  it('resizes the shorter side to size / crop_pct, then centre-crops', async () => {
    // 80×40: the shorter side goes to ⌊32 / 0.8⌋ = 40 (no resize), the crop keeps columns 24..55.
    // A white band at columns 20..59 (wider than the crop) leaves the crop all white.
    const band = await loadImage(await encode(80, 40, (x) => (x >= 20 && x < 60 ? [255, 255, 255] : [0, 0, 0])), { ...prep, interpolation: 'bilinear' });
    const white = (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
    expect(Math.min(...band.data.subarray(0, 1024))).toBeCloseTo(white, 4);
    // A 400×200 image halves to 80×40: its left and right quarters fall outside the crop.
    const big = await loadImage(await encode(400, 200, (x) => (x >= 100 && x < 300 ? [255, 255, 255] : [0, 0, 0])), prep);
    expect(Math.min(...big.data.subarray(0, 1024))).toBeGreaterThan(white - 0.05);
  });

  it('reads PNG, JPEG and WebP, and batches them', async () => {
    const dir = tempDir('volution-image-');
    const paths = await Promise.all(
      (['png', 'jpeg', 'webp'] as const).map(async (format) => {
        const path = join(dir, `grey.${format}`);
        writeFileSync(path, await encode(64, 48, () => [100, 100, 100], format));
        return path;
      }),
    );
    const batch = await loadImages(paths, prep);
    expect(batch.shape).toEqual([3, 3, 32, 32]);
    const grey = (100 / 255 - IMAGENET_MEAN[1]) / IMAGENET_STD[1];
    for (let n = 0; n < 3; n++) expect(batch.data[n * 3072 + 1024 + 500]).toBeCloseTo(grey, 1);
  });

  it('names a file it cannot decode', async () => {
    const path = join(tempDir('volution-image-'), 'broken.jpg');
    writeFileSync(path, Buffer.from('not an image at all'));
    await expect(loadImage(path, prep)).rejects.toThrow(FormatError);
    await expect(loadImage(path, prep)).rejects.toThrow(/cannot read image '.*broken\.jpg'/);
  });
});

/** Pillow 9.4 `Image.resize` of the 9×6 pattern below (python3-pil; hex-encoded RGB bytes). */
const PIL_RESIZED: { interpolation: 'bicubic' | 'bilinear'; size: [number, number]; expected: string }[] = [
  { interpolation: 'bicubic', size: [5, 4], expected: '3969756a6d9784c4b4b5603729549973aa60875283617a9abb68867c99824177a552888c5c5c9e90709a9b74757cb891726d73a4755537777b7fba74' },
  { interpolation: 'bicubic', size: [13, 7], expected: '0030650e427c2a609d427fb56199ce7db1ef96cbffaff65dd3a11fd50d4b282963054a7f285d924075ca68ab64a3aa16ce234d5d4282297cbb6fa4d999e039cc9a0cdd165441427b3075b25e93daafe4536ba547486f5ea07fb0aa306a8122594479ae78c7b9c4928ce720585d5da060ae869be44e659a355d91884682d22b74bb9568a393578a0a4f8456a9ebc48bcaff2a607a82ce94958ee8841f1a4fa3467bc46095b5376b4350a0af5989c8431a596388c08e84bca9346587a690997c8ab9237189bec24075a223596390c71d678a68744078d5272e8f80a72c78bd003e6589c10479b54c2d74b9cfff20a9de9369a4ec2d6ba8ad246fe94c319ddb076bab902d61b511466fa4d92cabe08074a9ee' },
  { interpolation: 'bilinear', size: [5, 4], expected: '3e6b786a6f9282b7b0ab6045385b906f9d67825f8465799ab368827f9381497e9f57838e5f609590709597797b7bb08f7174799b775742777c7cb178' },
  { interpolation: 'bilinear', size: [13, 7], expected: '00356a14497e2e6398477cb16196cb7aafe494c9feaee366c79a31cd164b362f6414497e285d92487db2689d66919832bb365b6850854479ae6da2d797cc4fc0932ad61f544e487d3c71a65d92c795ca5b6a9f575979689475a29643787a3e734479ae7eb3a9b98b88e0285d696398689d8796cb5c64994e5a8f894d82b74075aa82689d7f5b901a4f84669bd0b284b9ea3267847eb3958f89d0853a32679c497eb3568bab407556598e9f6078ad4b24596982b7867cb19f3c6a899887967f83ad3e737fb4b34c819c376c727fb42f6e81687d4e72c63130837a9e3f74a91045667fb42476ab574277acc7fc319fd4936ca1d6396ea3a33a6fd2563c9fd4096ca187396ea3194e6f97cc3c9fd47f77ace1' },
];

describe('resizeRgb', () => {
  const pattern = new Uint8Array(9 * 6 * 3);
  for (let y = 0; y < 6; y++) for (let x = 0; x < 9; x++) for (let c = 0; c < 3; c++) pattern[3 * (y * 9 + x) + c] = (x * 37 + y * 91 + c * 53 + x * y * 29) % 256;

  it.each(PIL_RESIZED)('matches PIL to the bit: $interpolation to $size', ({ interpolation, size, expected }) => {
    expect(Buffer.from(resizeRgb(pattern, 9, 6, size[0], size[1], interpolation)).toString('hex')).toBe(expected);
  });
});

describe('imagenetClassNames', () => {
  it("is torchvision's list of the 1000 classes", () => {
    const names = imagenetClassNames();
    expect(names).toHaveLength(1000);
    expect(names[0]).toBe('tench');
    expect(names[281]).toBe('tabby');
    expect(names[999]).toBe('toilet tissue');
  });
});
