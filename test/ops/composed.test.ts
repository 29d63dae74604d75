/**
 * Composed checks: whole blocks, forward and backward, agree across the two
 * backends and with finite differences.
 */
import { describe, it } from 'vitest';
import { NDArray } from '../../src/ir/ndarray.js';
import { type Tensor, batchNormTrain, conv2d, layerNorm } from '../../src/tensor/tensor.js';
import { checkOp, randn } from '../helpers/opcheck.js';

function attentionBlock(x: Tensor, wqkv: Tensor, bqkv: Tensor, wproj: Tensor, lnw: Tensor, lnb: Tensor): Tensor {
  const [b, n, c] = x.shape as [number, number, number];
  const heads = 2;
  const h = layerNorm(x, lnw, lnb, 1e-6);
  const qkv = h.matmul(wqkv.mT).add(bqkv).reshape(b, n, 3, heads, c / heads).permute(2, 0, 3, 1, 4);
  const [q, k, v] = [0, 1, 2].map((i) => qkv.select(0, i)) as [Tensor, Tensor, Tensor];
  const attn = q.mul((c / heads) ** -0.5).matmul(k.mT).softmax(-1);
  return x.add(attn.matmul(v).transpose(1, 2).reshape(b, n, c).matmul(wproj.mT));
}

function convBnGelu(x: Tensor, w: Tensor, gamma: Tensor, beta: Tensor): Tensor {
  return batchNormTrain(conv2d(x, w, undefined, { padding: 1, stride: 2 }), gamma, beta)[0].gelu();
}

const ones = (n: number, seed: number) => {
  const a = randn([n], seed, 0.1);
  for (let i = 0; i < n; i++) a.data[i]! += 1;
  return a;
};

describe('composed blocks across backends', () => {
  it('pre-norm multi-head attention block with residual', async () => {
    await checkOp({
      fn: attentionBlock,
      inputs: [randn([2, 5, 8], 1), randn([24, 8], 2, 0.3), randn([24], 3, 0.1), randn([8, 8], 4, 0.3), ones(8, 5), randn([8], 6, 0.1)],
      rtol: 2e-5,
    });
  });
  it('conv → train-mode batch norm → GELU', async () => {
    await checkOp({ fn: convBnGelu, inputs: [randn([2, 3, 6, 6], 7), randn([4, 3, 3, 3], 8, 0.3), ones(4, 9), randn([4], 10, 0.1)], rtol: 2e-5 });
  });
  it('depthwise conv → layer norm over channels (channels-last) → residual', async () => {
    await checkOp({
      fn: (x, w, g) => x.add(layerNorm(conv2d(x, w, undefined, { padding: 1, groups: 4 }).permute(0, 2, 3, 1), g, undefined, 1e-5).permute(0, 3, 1, 2)),
      inputs: [randn([1, 4, 5, 5], 11), randn([4, 1, 3, 3], 12, 0.3), NDArray.float64([4], [1, 0.9, 1.1, 1.2])],
      rtol: 2e-5,
    });
  });
});
