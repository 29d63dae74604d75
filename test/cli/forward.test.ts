import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { maxRelativeDifference } from '../../src/backends/passes/export.js';
import { loadSafetensorsFile, saveSafetensorsFile } from '../../src/io/safetensors.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { activation, loadFixture } from '../helpers/fixtures.js';
import { cli, fixtureConfig, fixturePath, tempDir } from './run.js';

// Every classifier case of the official fixtures (the ACmix operator cases, which have no classifier, are
// checked through the API in test/models/acmix.test.ts). Large weights are sharded: the Hugging Face index layout.
describe.each([
  ['ceit_micro', 'weights.safetensors'],
  ['ceit_tiny', 'weights.safetensors.index.json'],
  ['uniformer_micro', 'weights.safetensors'],
  ['uniformer_micro_convstem', 'weights.safetensors'],
  ['mixformer_micro', 'weights.safetensors'],
  ['mixformer_b0', 'weights.safetensors.index.json'],
  ['acmix_swin_micro', 'weights.safetensors'],
  ['acmix_resnet_micro', 'weights.safetensors.index.json'],
])('volution forward on the %s fixture', (name, weights) => {
  const fixture = loadFixture(name);
  const family = fixture.manifest.family;

  it('reproduces the official logits and activations', async () => {
    const out = join(tempDir(), 'y.safetensors');
    // Full-size cases name the variant; micro cases build the family from the official constructor's kwargs.
    const model = fixture.manifest.variant ? ['--model', fixture.manifest.variant] : ['--model', family, '--config', fixtureConfig(name)];
    const r = await cli('forward', ...model, '--weights', fixturePath(name, weights), '--input', fixturePath(name, 'io.safetensors'), '--output', out, '--activations');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/onnxruntime-node \d+\.\d+\.\d+ \(cpu\), 2 threads/);
    const { tensors, metadata } = await loadSafetensorsFile(out);
    expect(metadata['volution.model']).toBe(fixture.manifest.variant ?? family);
    expect(maxRelativeDifference(tensors.get('logits')!, fixture.io.get('logits')!)).toBeLessThan(1e-4);
    // Every activation the fixture recorded that the model also records agrees.
    let compared = 0;
    for (const key of fixture.activations.keys()) {
      const ours = tensors.get(key);
      if (!ours) continue;
      expect(maxRelativeDifference(ours, activation(fixture, key)!), key).toBeLessThan(1e-4);
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(Math.min(5, fixture.activations.size));
    expect([...tensors.keys()].some((k) => /:in\.0$/.test(k))).toBe(true);
  });
});

describe('volution forward errors', () => {
  it('names the missing input tensor', async () => {
    const dir = tempDir();
    const bad = join(dir, 'x.safetensors');
    await saveSafetensorsFile(bad, { image: NDArray.float32([1, 3, 64, 64]) });
    const r = await cli('forward', '--model', 'ceit', '--config', fixtureConfig('ceit_micro'), '--weights', fixturePath('ceit_micro', 'weights.safetensors'), '--input', bad, '--output', join(dir, 'y.safetensors'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: --input '.*x\.safetensors' has no tensor named 'input' \(it holds: image\)\n$/);
  });

  it('reports a checkpoint that does not fit as one line', async () => {
    const dir = tempDir();
    const r = await cli('forward', '--model', 'ceit', '--config', '{"embed_dim": 48, "depth": 2, "num_heads": 3, "img_size": 64, "num_classes": 10}', '--weights', fixturePath('ceit_micro', 'weights.safetensors'), '--input', fixturePath('ceit_micro', 'io.safetensors'), '--output', join(dir, 'y.safetensors'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: the checkpoint does not fit CeIT: unexpected keys: blocks\.2\./);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
