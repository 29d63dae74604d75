/**
 * Train-mode gradients against the official PyTorch fixtures: one forward
 * and backward in train mode (drop rates 0), mean cross-entropy against the
 * stored target; the loss, train-mode logits, every parameter gradient and
 * the BatchNorm statistics after the step must match (the fixtures' rule:
 * max|Δ| ≤ 1e-4·max|ref| + 100·fp64_abs).
 */
import { describe, expect, it } from 'vitest';
import { createModel } from '../../src/models/index.js';
import { checkGradParity } from '../helpers/gradparity.js';

const cases = ['uniformer_micro', 'uniformer_micro_convstem', 'ceit_micro', 'mixformer_micro', 'acmix_swin_micro'] as const;
const family: Record<(typeof cases)[number], string> = {
  uniformer_micro: 'uniformer',
  uniformer_micro_convstem: 'uniformer',
  ceit_micro: 'ceit',
  mixformer_micro: 'mixformer',
  acmix_swin_micro: 'acmix_swin',
};

describe('train-mode gradients match the official code', () => {
  for (const c of cases) {
    it(c, async () => {
      const { checked } = await checkGradParity(c, (f) => createModel(family[c], f.manifest.kwargs));
      expect(checked).toBeGreaterThan(10);
    });
  }
});
