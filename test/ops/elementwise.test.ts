import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { compile } from '../../src/backends/compile.js';
import { toOnnx } from '../../src/backends/onnx/model.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { trace } from '../../src/tensor/function.js';
import { batchNormTrain, constant, layerNorm, where, type Tensor } from '../../src/tensor/tensor.js';
import { checkOp, expectClose, onnxOpCount, randn, runOrt, runRef } from '../helpers/opcheck.js';

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
    ['gelu', (x) => x.gelu(), false],
    ['hard sigmoid (clamps some inputs at 0 and 1)', (x) => x.hardSigmoid(0.7, 0.4), false],
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

describe('hard sigmoid', () => {
  it('runs in float64 on ORT too (spelled out there: its HardSigmoid kernel is float32 only)', async () => {
    const x = NDArray.float64([6], [-4, -0.5, 0, 0.3, 1.5, 9]);
    const [y] = await compile((t) => [t!.hardSigmoid()], { threads: 1 })(x);
    expect(y!.dtype).toBe('float64');
    expectClose(y!.toFloat64(), [0, 5 / 12, 0.5, 0.55, 0.75, 1], 1e-15, 'hardsigmoid (PyTorch defaults)', 1e-15);
  });
  it('rejects non-finite attributes', () => {
    expect(() => trace((t) => t.hardSigmoid(Number.NaN), [{ dtype: 'float32', shape: [2] }])).toThrow(/alpha and beta must be finite/);
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

describe('gelu (primitive: ORT contrib kernel in process, standard ONNX in files)', () => {
  // torch.nn.functional.gelu (exact) and its gradient in float64
  const xs = [-30, -14, -6, -1.5, -0.25, 0, 0.25, 1.5, 6, 14, 30];
  const torchY = [-0, -0, -5.919525869479969e-9, -0.10021080190328704, -0.10032341857926907, 0, 0.14967658142073093, 1.399789198096713, 5.999999994080474, 14, 30];
  const torchG = [0, 0, -3.546870945402639e-8, -0.1274691922299796, 0.304626645116364, 0.5, 0.695373354883636, 1.1274691922299795, 1.0000000354687093, 1, 1];
  const x = NDArray.float64([xs.length], xs);
  const fwdBwd = (t: Tensor) => [t.gelu(), grad(t.gelu().sum(), [t])[0]!];

  it('values and gradient equal PyTorch, including 0 and the tails (no overflow to NaN)', async () => {
    const [y, g] = runRef(fwdBwd, [x]);
    expectClose(y!.data, torchY, 1e-12, 'gelu (reference)', 1e-15);
    // (the rule's constants are float32 in a float32 graph, also on the reference)
    expectClose(g!.data, torchG, 1e-7, 'gelu gradient (reference)', 1e-15);
    for (const contribOps of [true, false]) {
      const [yo, go] = await runOrt(fwdBwd, [x], contribOps);
      expectClose(yo!.toFloat64(), torchY, 1e-6, `gelu on ORT (contribOps ${contribOps})`, 1e-6);
      expectClose(go!.toFloat64(), torchG, 1e-6, `gelu gradient on ORT (contribOps ${contribOps})`, 1e-6);
    }
  });
  it('the portable lowering (exported files) matches the contrib kernel, forward and backward', async () => {
    const inputs = [randn([2, 3, 5], 20, 3), randn([2, 3, 5], 21)];
    const f = (t: Tensor, c: Tensor) => [t.gelu(), grad(t.gelu().mul(c).sum(), [t])[0]!];
    const ref = runRef(f, inputs);
    const contrib = await runOrt(f, inputs, true);
    const portable = await runOrt(f, inputs, false);
    ref.forEach((r, i) => {
      expectClose(contrib[i]!.toFloat64(), r.data, 1e-5, `contrib output ${i}`, 1e-6);
      expectClose(portable[i]!.toFloat64(), r.data, 1e-5, `portable output ${i}`, 1e-6);
    });
  });
  it('only in-process graphs import com.microsoft, and only when they use it', () => {
    const has = (bytes: Uint8Array) => Buffer.from(bytes).includes('com.microsoft');
    const gelu = trace((t) => t.gelu().mul(constant(NDArray.float32([], [2]))), [{ dtype: 'float32', shape: [4] }]).graph;
    const plain = trace((t) => t.erf(), [{ dtype: 'float32', shape: [4] }]).graph;
    expect(has(toOnnx(gelu, { contribOps: true }))).toBe(true);
    expect(has(toOnnx(gelu))).toBe(false);
    expect(has(toOnnx(plain, { contribOps: true }))).toBe(false);
  });
});

describe('a + y·s lowers to one GatedAdd in process (scale constant along trailing axes)', () => {
  const shape = [4, 8, 16, 16];
  /** ORT (contrib ops) against the reference interpreter, and the GatedAdd nodes of the in-process and the portable model. */
  async function check(fn: (...xs: Tensor[]) => Tensor | Tensor[], inputs: NDArray[]): Promise<{ fused: number; portable: number }> {
    const ref = runRef(fn, inputs);
    const ort = await runOrt(fn, inputs);
    ref.forEach((r, i) => expectClose(ort[i]!.toFloat64(), r.data, 1e-5, `ORT vs reference, output ${i}`, 1e-6));
    const { graph } = trace(fn, inputs.map((a, i) => ({ dtype: 'float32' as const, shape: a.shape, name: `input_${i}` })));
    return { fused: onnxOpCount(toOnnx(graph, { contribOps: true }), 'GatedAdd'), portable: onnxOpCount(toOnnx(graph), 'GatedAdd') };
  }
  const fusedCases: [string, (...xs: Tensor[]) => Tensor, number[]][] = [
    ['a constant scalar', (a, y) => a.add(y!.mul(0.3)), []],
    ['a run-time scalar, subtracted', (a, y, s) => a.sub(y!.mul(s!)), []],
    ['a per-row sum (scale first)', (a, y, s) => a.add(s!.mul(y!)), [4, 8, 16, 1]],
    ['a per-channel vector over NCHW (product first)', (a, y, s) => y!.mul(s!).add(a), [8, 1, 1]],
  ];
  for (const [what, fn, scaleShape] of fusedCases) {
    it(what, async () => {
      const counts = await check(fn, [randn(shape, 1), randn(shape, 2), randn(scaleShape, 3)]);
      expect(counts).toEqual({ fused: 1, portable: 0 });
    });
  }
  for (const rows of [[8192], [4, 2048]]) {
    it(`a graph output keeps its shape ${JSON.stringify(rows)} as GatedAdd's rows (a Reshape would copy it)`, async () => {
      const fn = (a: Tensor, y: Tensor, s: Tensor) => a.add(y.mul(s));
      expect(await check(fn, [randn(rows, 4), randn(rows, 5), randn([], 6)])).toEqual({ fused: 1, portable: 0 });
      const { graph } = trace(fn, [{ dtype: 'float32', shape: rows }, { dtype: 'float32', shape: rows }, { dtype: 'float32', shape: [] }]);
      // the scalar's own, to the gate's [1, …]; none of the tensors
      expect(onnxOpCount(toOnnx(graph, { contribOps: true }), 'Reshape')).toBe(1);
    });
  }
  const plainCases: [string, (...xs: Tensor[]) => Tensor | Tensor[], number[][]][] = [
    ['the scale varies along the last axis', (a, y, s) => a.add(y!.mul(s!)), [shape, shape, [16]]],
    ['the product is read twice', (a, y, s) => { const p = y!.mul(s!); return [a.add(p), p]; }, [shape, shape, []]],
    ['the product is the minuend', (a, y, s) => y!.mul(s!).sub(a), [shape, shape, []]],
    ['the tensor is small', (a, y, s) => a.add(y!.mul(s!)), [[4, 8], [4, 8], []]],
    ['the other addend broadcasts', (a, y, s) => a.add(y!.mul(s!)), [[16], shape, []]],
  ];
  for (const [what, fn, shapes] of plainCases) {
    it(`stays Mul and Add when ${what}`, async () => {
      expect((await check(fn, shapes.map((s, i) => randn(s, 10 + i)))).fused).toBe(0);
    });
  }
  // (Layer norm's and batch norm's gradients are ops of their own, a fused kernel each where the session has them.)
  it('softmax\'s gradient uses it; next to layer norm\'s and batch norm\'s, all agree with the reference', async () => {
    const fn = (x: Tensor, w: Tensor, b: Tensor, wc: Tensor, bc: Tensor): Tensor[] => {
      const soft = x.softmax(-1).mul(x).sum();
      const ln = layerNorm(x.reshape([4, 8, 256]), w, b).square().sum();
      const bn = batchNormTrain(x, wc, bc)[0].square().sum();
      return grad(soft.add(ln).add(bn), [x, w, b, wc, bc]);
    };
    const counts = await check(fn, [randn(shape, 20), randn([256], 21), randn([256], 22), randn([8], 23), randn([8], 24)]);
    expect(counts.fused).toBeGreaterThanOrEqual(1);
    expect(counts.portable).toBe(0);
  });
});
