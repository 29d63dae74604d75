import { describe, it } from 'vitest';
import { NDArray } from '../../src/ir/ndarray.js';
import { where, type Tensor } from '../../src/tensor/tensor.js';
import { checkOp, randn } from '../helpers/opcheck.js';

const pos = (shape: number[], seed: number) => {
  const a = randn(shape, seed);
  for (let i = 0; i < a.size; i++) a.data[i] = Math.abs(a.data[i]!) + 0.5;
  return a;
};

describe('elementwise binary ops (broadcasting)', () => {
  const cases: [string, (a: Tensor, b: Tensor) => Tensor][] = [
    ['add', (a, b) => a.add(b)],
    ['sub', (a, b) => a.sub(b)],
    ['mul', (a, b) => a.mul(b)],
    ['div', (a, b) => a.div(b)],
    ['maximum', (a, b) => a.maximum(b)],
    ['minimum', (a, b) => a.minimum(b)],
  ];
  for (const [name, fn] of cases) {
    it(`${name}: [2,3,4] with [3,1]`, async () => {
      await checkOp({ fn, inputs: [randn([2, 3, 4], 1), name === 'div' ? pos([3, 1], 2) : randn([3, 1], 2)] });
    });
    it(`${name}: scalar with [5]`, async () => {
      await checkOp({ fn, inputs: [randn([], 3), name === 'div' ? pos([5], 4) : randn([5], 4)] });
    });
  }
  it('pow with positive base', async () => {
    await checkOp({ fn: (a, b) => a.pow(b), inputs: [pos([2, 3], 5), randn([3], 6)] });
  });
});

describe('elementwise unary ops', () => {
  const cases: [string, (x: Tensor) => Tensor, boolean][] = [
    ['neg', (x) => x.neg(), false],
    ['exp', (x) => x.exp(), false],
    ['log', (x) => x.log(), true],
    ['sqrt', (x) => x.sqrt(), true],
    ['tanh', (x) => x.tanh(), false],
    ['erf', (x) => x.erf(), false],
    ['sigmoid', (x) => x.sigmoid(), false],
    ['relu', (x) => x.relu(), false],
    ['abs', (x) => x.abs(), false],
    ['gelu (composite)', (x) => x.gelu(), false],
    ['rsqrt (composite)', (x) => x.rsqrt(), true],
  ];
  for (const [name, fn, positive] of cases) {
    it(name, async () => {
      await checkOp({ fn, inputs: [positive ? pos([3, 4], 7) : randn([3, 4], 7)] });
    });
  }
  it('sign has zero gradient', async () => {
    await checkOp({ fn: (x) => x.sign().add(x), inputs: [randn([6], 8)] });
  });
});

describe('comparison, logic, where, cast', () => {
  it('where(a > b, a·2, b) differentiates both branches', async () => {
    await checkOp({ fn: (a, b) => where(a.gt(b), a.mul(2), b), inputs: [randn([4, 3], 9), randn([3], 10)] });
  });
  it('comparisons and logic produce bool', async () => {
    await checkOp({ fn: (a, b) => a.lt(b).or(a.eq(b)).and(a.gt(b).not().not().not()).cast('float32'), inputs: [randn([4, 3], 11), randn([4, 3], 12)], wrt: [] });
  });
  it('cast float → int64 → float truncates toward zero', async () => {
    const ref = await checkOp({ fn: (a) => a.mul(3).cast('int64').cast('float32'), inputs: [NDArray.float64([4], [-1.9, -0.2, 0.4, 2.7])], wrt: [] });
    if (ref[0]!.data.join() !== [-5, 0, 1, 8].join()) throw new Error(`cast: got ${ref[0]!.data.join()}`);
  });
});
