import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { saveModel } from '../../src/io/model_dir.js';
import { createModel } from '../../src/models/index.js';
import { cli, tempDir } from './run.js';

interface PredictJson {
  model: string;
  backend: string;
  results: { image: string; predictions: { index: number; label: string; probability: number }[] }[];
}

describe('volution predict', () => {
  const dir = tempDir('volution-predict-');
  const images: string[] = [];
  const modelDir = join(dir, 'model');

  beforeAll(async () => {
    // A small CeiT with 1000 classes, so predictions carry ImageNet names.
    await saveModel(createModel('ceit', { embed_dim: 48, depth: 2, num_heads: 3, img_size: 64 }, { seed: 1 }), modelDir, { name: 'ceit' });
    for (const [i, format] of (['png', 'jpeg', 'webp'] as const).entries()) {
      const raw = Buffer.alloc(90 * 70 * 3);
      for (let p = 0; p < 90 * 70; p++) raw.set([(p * (i + 3)) % 256, (p >> 4) % 256, 60 * i], 3 * p);
      const img = sharp(raw, { raw: { width: 90, height: 70, channels: 3 } });
      const path = join(dir, `image${i}.${format}`);
      writeFileSync(path, await (format === 'png' ? img.png() : format === 'jpeg' ? img.jpeg() : img.webp()).toBuffer());
      images.push(path);
    }
  });

  it('prints the top-k ImageNet classes of each image', async () => {
    const r = await cli('predict', '--weights', modelDir, '--topk', '3', '--batch', '2', '--json', ...images);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as PredictJson;
    expect(out.backend).toMatch(/^onnxruntime-node .* \(cpu\), 2 threads$/);
    expect(out.results.map((x) => x.image)).toEqual(images);
    for (const { predictions } of out.results) {
      expect(predictions).toHaveLength(3);
      expect(predictions[0]!.probability).toBeGreaterThanOrEqual(predictions[1]!.probability);
      expect(predictions.reduce((s, p) => s + p.probability, 0)).toBeLessThanOrEqual(1 + 1e-9);
      for (const p of predictions) expect(p.label).not.toMatch(/^class /);
    }
    const text = await cli('predict', '--weights', modelDir, '--topk', '2', images[0]!);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/on onnxruntime-node/);
    expect(text.stdout).toMatch(/^ {3}1\. .+ \(\d+\) +\d+\.\d\d%$/m);
  });

  it('names a file that is not an image', async () => {
    const broken = join(dir, 'broken.png');
    writeFileSync(broken, Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]));
    const r = await cli('predict', '--weights', modelDir, images[0]!, broken);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot read image '.*broken\.png': .*JPEG, PNG or WebP file\n$/);
  });
});
