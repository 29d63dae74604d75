/**
 * One conformance test over the whole registry (timm's test_models): every
 * variant builds, its parameter count equals the official code's
 * (variants.json) where recorded, its pretrained config agrees with the
 * model, and its forward traces at the default input to [batch, classes].
 * One small variant per family also runs on ONNX Runtime with random weights.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { countMacs } from '../../src/ir/analysis.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { createModel, getVariant, listFamilies, listModels, pretrainedConfig } from '../../src/models/index.js';
import { runModule } from '../../src/nn/run.js';
import { trace } from '../../src/tensor/function.js';
import { OFFICIAL_VARIANTS } from '../helpers/official.js';

const table = OFFICIAL_VARIANTS;
/** ACmix-ResNet's local attention is an elementwise multiply-sum officially (not counted) but matmuls here. */
const MACS_DIFFER = /^acmix_resnet/;
/** One small variant per family runs on ONNX Runtime with random weights. */
const REPRESENTATIVES = ['uniformer_small', 'uniformer_xxs', 'ceit_tiny', 'deit_tiny', 'mixformer_b0', 'acmix_resnet26', 'acmix_swin_tiny', 'resnet18', 'xvolution_resnet34_dw'];

describe('registry', () => {
  const names = listModels();

  it('lists every family and variant, with glob patterns', () => {
    expect(listFamilies()).toEqual(expect.arrayContaining(['uniformer', 'uniformer_light', 'ceit', 'vit', 'mixformer', 'acmix_resnet', 'acmix_swin', 'resnet', 'xvolution_resnet']));
    expect(names.length).toBeGreaterThanOrEqual(50);
    expect(listModels('mixformer_b?')).toEqual(['mixformer_b0', 'mixformer_b1', 'mixformer_b2', 'mixformer_b3', 'mixformer_b4', 'mixformer_b5', 'mixformer_b6']);
    for (const v of table.keys()) expect(names, `variants.json lists ${v}`).toContain(v);
    expect(new Set(REPRESENTATIVES.map((n) => getVariant(n).family))).toEqual(new Set(listFamilies()));
  });

  it('unknown names and options are ConfigErrors that say what exists', () => {
    expect(() => createModel('uniformer_smal')).toThrow(/unknown model 'uniformer_smal'.*did you mean/);
    expect(() => createModel('ceit_tiny', { embed_dimm: 3 })).toThrow(ConfigError);
    expect(() => createModel('ceit_tiny', { embed_dimm: 3 })).toThrow(/unknown config option 'embed_dimm'/);
  });

  for (const name of names) {
    it(`${name}: builds, counts, and traces its default input to [1, classes]`, () => {
      const model = createModel(name, {}, { init: false });
      const pre = pretrainedConfig(name);
      expect(model.numClasses).toBe(pre.numClasses);
      expect(getVariant(name).pretrained).toBe(pre);
      const traced = trace((x) => model.call(x!), [{ dtype: 'float32', shape: [1, ...pre.inputSize] }]);
      expect(traced.graph.outputs[0]!.shape).toEqual([1, pre.numClasses]);
      const official = table.get(name);
      if (official) {
        expect(model.numParams()).toBe(official.params);
        if (!MACS_DIFFER.test(name)) expect(countMacs(traced.graph)).toBe(official.macs_224);
      }
    });
  }

  for (const name of REPRESENTATIVES) {
    it(`${name}: random weights, a batch of 2 on ONNX Runtime gives finite logits`, async () => {
      const model = createModel(name, {}, { seed: 1 }).eval();
      const [c, h, w] = pretrainedConfig(name).inputSize;
      const x = NDArray.float32([2, c, h, w]);
      for (let i = 0; i < x.size; i++) x.data[i] = Math.sin(i * 0.37) * 2;
      const { output } = await runModule(model, x);
      expect(output.shape).toEqual([2, model.numClasses]);
      expect(Array.from(output.toFloat64()).every(Number.isFinite)).toBe(true);
    });
  }
});
