/** The command line of training: forward --train, train, validate, fine-tuning with a new head. */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { loadSafetensorsFile } from '../../src/io/safetensors.js';
import { maxRelativeDifference } from '../../src/backends/passes/export.js';
import { MetricsLog } from '../../src/train/metrics.js';
import { cli, fixtureConfig, fixturePath, tempDir } from '../cli/run.js';

const TINY = '{"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 32], "head_dim": 8}';

describe('volution forward --train --target', () => {
  it('writes the fixtures\' grads.safetensors layout, with the official loss and statistics', async () => {
    const name = 'uniformer_micro';
    const out = join(tempDir(), 'g.safetensors');
    const r = await cli('forward', '--train', '--model', 'uniformer', '--config', fixtureConfig(name), '--weights', fixturePath(name, 'weights.safetensors'), '--input', fixturePath(name, 'io.safetensors'), '--target', fixturePath(name, 'grads.safetensors'), '--output', out);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/train-mode loss \d\.\d+, \d+ gradients, 15 BatchNorm statistics/);
    const ours = (await loadSafetensorsFile(out)).tensors;
    const ref = (await loadSafetensorsFile(fixturePath(name, 'grads.safetensors'))).tensors;
    expect([...ours.keys()].sort()).toEqual([...ref.keys()].sort());
    for (const k of ['loss', 'logits_train', 'bn_after.blocks1.0.norm1.running_mean', 'bn_after.norm.running_var', 'grad.head.weight']) {
      expect(maxRelativeDifference(ours.get(k)!, ref.get(k)!), k).toBeLessThan(1e-4);
    }
    expect(ours.get('bn_after.norm.num_batches_tracked')!.dtype).toBe('int64');
    expect(ours.get('bn_after.norm.num_batches_tracked')!.get(0)).toBe(ref.get('bn_after.norm.num_batches_tracked')!.get(0));
  });

  it('--train without --target, and a target of the wrong shape, are one-line errors', async () => {
    const name = 'ceit_micro';
    const args = ['forward', '--train', '--model', 'ceit', '--config', fixtureConfig(name), '--weights', fixturePath(name, 'weights.safetensors'), '--input', fixturePath(name, 'io.safetensors'), '--output', join(tempDir(), 'g.safetensors')];
    const a = await cli(...args);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/^error: --train needs --target/);
    const b = await cli(...args, '--target', fixturePath(name, 'io.safetensors'));
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^error: --target '.*' has no tensor named 'target'/);
  });
});

describe('volution train / validate', () => {
  it('trains, evaluates, writes the run directory; validate reproduces the last evaluation; --init fine-tunes with a new head', async () => {
    const dir = tempDir();
    const run = join(dir, 'run');
    const r = await cli('train', '--model', 'uniformer', '--config', TINY, '--data', 'synthetic:train=64,val=40', '--epochs', '2', '--batch', '16', '--out', run, '--ema');
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/training uniformer: [\d,]+ parameters, 10 classes, input 32×32/);
    expect(r.stdout).toMatch(/epoch 2\/2 {2}train loss \d\.\d+ acc [\d.]+% {2}val loss \d\.\d+ top-1 [\d.]+% top-5 [\d.]+% {2}EMA top-1 [\d.]+% .* data [\d.]+ ms\/batch \(waited [\d.]+ ms\) vs step \d+ ms/);
    for (const f of ['metrics.jsonl', 'report.html', 'checkpoint.safetensors', 'model/config.json', 'model/model.safetensors', 'model_ema/model.safetensors']) expect(existsSync(join(run, f)), f).toBe(true);
    const last = MetricsLog.read(join(run, 'metrics.jsonl')).filter((x) => x.kind === 'epoch').at(-1) as { val_top1: number; val_loss: number };

    const v = await cli('validate', '--weights', join(run, 'model'), '--data', 'synthetic:train=64,val=40', '--json', '--batch', '16');
    expect(v.code).toBe(0);
    const got = JSON.parse(v.stdout) as { top1: number; loss: number; images: number };
    expect(got.images).toBe(40);
    expect(got.top1).toBeCloseTo(last.val_top1, 10);
    expect(got.loss).toBeCloseTo(last.val_loss, 4);

    // Nothing left: resuming a finished run says so.
    const again = await cli('train', '--resume', join(run, 'checkpoint.safetensors'));
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/nothing left to train/);

    // Fine-tune the 10-class model on a 3-class image folder.
    const folder = join(dir, 'images');
    for (const [i, c] of ['circle', 'square', 'star'].entries()) {
      mkdirSync(join(folder, c), { recursive: true });
      for (let k = 0; k < 6; k++) await sharp({ create: { width: 40, height: 36, channels: 3, background: { r: 80 * i, g: 20 * k, b: 100 } } }).png().toFile(join(folder, c, `${k}.png`));
    }
    const ft = await cli('train', '--init', join(run, 'model'), '--data', folder, '--img-size', '32', '--epochs', '1', '--batch', '4', '--out', join(dir, 'ft'));
    expect(ft.code).toBe(0);
    expect(ft.stderr).toMatch(/note: new 3-class head: head\.weight, head\.bias freshly initialised; every other tensor loaded/);
    const cfg = JSON.parse(readFileSync(join(dir, 'ft', 'model', 'config.json'), 'utf8')) as { config: { num_classes: number; embed_dim: number[] } };
    expect(cfg.config.num_classes).toBe(3);
    expect(cfg.config.embed_dim).toEqual([8, 16, 32, 32]);
  });

  it('an --init that does not fit beyond the head is a one-line error', async () => {
    const r = await cli('train', '--model', 'ceit', '--config', '{"embed_dim": 48, "depth": 2, "num_heads": 3, "img_size": 64}', '--init', fixturePath('ceit_micro', 'weights.safetensors'), '--data', 'synthetic:size=64,train=8,val=8', '--epochs', '1', '--batch', '4', '--out', join(tempDir(), 'x'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: --init '.*' does not fit the model beyond its classifier: unexpected blocks\.2\./);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
