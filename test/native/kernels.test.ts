/**
 * volution's fused kernels, run through the C-API session, against
 * float64 formulas; and the lowering that uses them.
 */
import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/grad.js';
import { trace } from '../../src/tensor/function.js';
import { Parameter, type Tensor, batchNormTrain, constant, conv2d, layerNorm, maxPool2d } from '../../src/tensor/tensor.js';
import { createInferenceRunner, exportInference } from '../../src/backends/passes/export.js';
import { expectClose, onnxDomainCount, onnxOpCount, randn, runOrt, runRef } from '../helpers/opcheck.js';
import { NDArray } from '../../src/ir/ndarray.js';
import { kernelLibrary } from '../../src/backends/ort/kernels.js';
import { NativeOrtSession } from '../../src/backends/ort/native.js';
import { kernelModel, toOnnx } from '../../src/backends/onnx/model.js';
import { erf } from '../helpers/erf.js';

const library = kernelLibrary();

describe.runIf(library !== undefined || process.env.CI === 'true')('native kernels (C-API session)', () => {
  it('the kernel library builds with the system C compiler', () => {
    expect(library).toBeDefined();
  });

  it('Gelu and GeluGrad: x·Φ(x) and dy·(Φ(x) + x·φ(x)) within 5e-7, over the tails too and across blocks', () => {
    const n = 40001; // more than two of the kernels' blocks, and a tail shorter than a vector
    const x = NDArray.float32([n]);
    const dy = NDArray.float32([n]);
    for (let i = 0; i < n; i++) {
      x.data[i] = -20 + (40 * i) / (n - 1);
      dy.data[i] = Math.cos(i);
    }
    const forward = NativeOrtSession.create(kernelModel('Gelu', [['x', [n]]], [['y', [n]]]), library!, { threads: 2 });
    const backward = NativeOrtSession.create(kernelModel('GeluGrad', [['dy', [n]], ['x', [n]]], [['dx', [n]]]), library!, { threads: 2 });
    const { y } = forward.run({ x });
    const { dx } = backward.run({ dy, x });
    forward.release();
    backward.release();
    let [worstY, worstDx] = [0, 0];
    for (let i = 0; i < n; i++) {
      const v = x.data[i]!;
      const cdf = 0.5 * (1 + erf(v / Math.SQRT2));
      worstY = Math.max(worstY, Math.abs(y!.data[i] as number - v * cdf));
      worstDx = Math.max(worstDx, Math.abs(dx!.data[i] as number - dy.data[i]! * (cdf + (v * Math.exp(-v * v / 2)) / Math.sqrt(2 * Math.PI))));
    }
    expect(worstY).toBeLessThan(5e-7);
    expect(worstDx).toBeLessThan(5e-7);
  });

  it('Gelu and GeluGrad pass NaN through and take huge inputs to their limits', () => {
    const x = NDArray.float32([5], new Float32Array([NaN, 1e30, -1e30, Infinity, -Infinity]));
    const dy = NDArray.float32([5], new Float32Array([1, 2, 2, 2, 2]));
    const forward = NativeOrtSession.create(kernelModel('Gelu', [['x', [5]]], [['y', [5]]]), library!, { threads: 1 });
    const backward = NativeOrtSession.create(kernelModel('GeluGrad', [['dy', [5]], ['x', [5]]], [['dx', [5]]]), library!, { threads: 1 });
    const y = [...forward.run({ x }).y!.data] as number[];
    const dx = [...backward.run({ dy, x }).dx!.data] as number[];
    forward.release();
    backward.release();
    // GELU(x) → x and GELU'(x) → 1 as x → ∞; both → 0 as x → −∞
    expect([Number.isNaN(y[0]), y[1], Math.abs(y[2]!) < 1e-30, y[3], Math.abs(y[4]!) < 1e-30]).toEqual([true, Math.fround(1e30), true, Infinity, true]);
    expect(Number.isNaN(dx[0])).toBe(true);
    dx.slice(1).forEach((g, i) => expect(g).toBeCloseTo([2, 0, 2, 0][i]!, 6));
  });

  it('LayerNormGrad: dx, dγ and dβ of a layer norm over the last axis, across row blocks', () => {
    const [rows, d] = [600, 40];
    const x = NDArray.float32([rows, d]);
    const dy = NDArray.float32([rows, d]);
    const w = NDArray.float32([d]);
    for (let i = 0; i < rows * d; i++) {
      x.data[i] = 3 * Math.sin(0.37 * i) + 1;
      dy.data[i] = Math.cos(1.3 * i);
    }
    for (let c = 0; c < d; c++) w.data[c] = 1 + 0.5 * Math.sin(c);
    const mean = NDArray.float32([rows]);
    const rstd = NDArray.float32([rows]);
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.data.subarray(r * d, (r + 1) * d));
      const mu = row.reduce((a, b) => a + b) / d;
      mean.data[r] = mu;
      rstd.data[r] = 1 / Math.sqrt(row.reduce((a, b) => a + (b - mu) ** 2, 0) / d + 1e-5);
    }
    const session = NativeOrtSession.create(
      kernelModel('LayerNormGrad', [['dy', [rows, d]], ['x', [rows, d]], ['mean', [rows]], ['rstd', [rows]], ['w', [d]]], [['dx', [rows, d]], ['dw', [d]], ['db', [d]]]),
      library!,
      { threads: 2 },
    );
    const out = session.run({ dy, x, mean, rstd, w });
    session.release();
    const dwRef = new Float64Array(d);
    const dbRef = new Float64Array(d);
    let worst = 0;
    for (let r = 0; r < rows; r++) {
      const xh = (c: number) => (x.data[r * d + c]! - mean.data[r]!) * rstd.data[r]!;
      let sg = 0;
      let sgx = 0;
      for (let c = 0; c < d; c++) {
        const g = dy.data[r * d + c]! * w.data[c]!;
        sg += g;
        sgx += g * xh(c);
        dwRef[c] += dy.data[r * d + c]! * xh(c);
        dbRef[c] += dy.data[r * d + c]!;
      }
      for (let c = 0; c < d; c++) {
        const ref = rstd.data[r]! * (dy.data[r * d + c]! * w.data[c]! - sg / d - (xh(c) * sgx) / d);
        worst = Math.max(worst, Math.abs((out.dx!.data[r * d + c] as number) - ref));
      }
    }
    expect(worst).toBeLessThan(1e-5);
    for (let c = 0; c < d; c++) {
      expect(out.dw!.data[c] as number).toBeCloseTo(dwRef[c]!, 3);
      expect(out.db!.data[c] as number).toBeCloseTo(dbRef[c]!, 3);
    }
  });

  it('LayerNorm: y, mean and rstd over the last axis, for row lengths it unrolls (64, 96, 128) and others, across row blocks', () => {
    for (const d of [7, 64, 96, 128, 200]) {
      const rows = 300; // more than one block of 256 rows
      const x = NDArray.float32([rows, d]);
      const w = NDArray.float32([d]);
      const b = NDArray.float32([d]);
      // every third row sits far from zero: the variance is taken around the mean, not as E[x²] − μ²
      for (let i = 0; i < rows * d; i++) x.data[i] = 3 * Math.sin(0.37 * i) + (Math.floor(i / d) % 3 === 0 ? 1000 : 1);
      for (let c = 0; c < d; c++) [w.data[c], b.data[c]] = [1 + 0.5 * Math.sin(c), Math.cos(c)];
      const session = NativeOrtSession.create(
        kernelModel('LayerNorm', [['x', [rows, d]], ['w', [d]], ['b', [d]], ['eps', [1]]], [['y', [rows, d]], ['mean', [rows]], ['rstd', [rows]]]),
        library!,
        { threads: 2 },
      );
      const out = session.run({ x, w, b, eps: NDArray.float32([1], new Float32Array([1e-5])) });
      session.release();
      let worst = 0;
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.data.subarray(r * d, (r + 1) * d));
        const mu = row.reduce((s, v) => s + v) / d;
        const rstd = 1 / Math.sqrt(row.reduce((s, v) => s + (v - mu) ** 2, 0) / d + 1e-5);
        expect(out.mean!.data[r] as number).toBeCloseTo(mu, 3);
        expect((out.rstd!.data[r] as number) / rstd).toBeCloseTo(1, 5);
        for (let c = 0; c < d; c++) worst = Math.max(worst, Math.abs((out.y!.data[r * d + c] as number) - ((row[c]! - mu) * rstd * w.data[c]! + b.data[c]!)));
      }
      expect(worst, `rows of ${d}`).toBeLessThan(2e-4);
    }
  });

  it('a shape the kernel cannot take is an error with its name, not a crash', () => {
    const session = NativeOrtSession.create(kernelModel('GeluGrad', [['dy', [3]], ['x', [4]]], [['dx', [4]]]), library!, { threads: 1 });
    expect(() => session.run({ dy: NDArray.float32([3]), x: NDArray.float32([4]) })).toThrow(/GeluGrad: dy and x must have the same shape/);
    session.release();
  });

  it('gelu and its gradient lower to the fused kernels in a session that has them, and to ONNX Runtime\'s own ops otherwise; both equal the reference', async () => {
    const x = randn([4, 32, 40], 30, 3); // 5120 elements: large enough for the chain's GatedAdd
    const c = randn([4, 32, 40], 31);
    const f = (t: Tensor, u: Tensor) => {
      const y = t.gelu();
      return [y, grad(y.mul(u).sum(), [t])[0]!];
    };
    const graph = trace(f, [{ dtype: 'float32', shape: x.shape }, { dtype: 'float32', shape: c.shape }]).graph;
    const fused = toOnnx(graph, { contribOps: true, kernels: true });
    const chain = toOnnx(graph, { contribOps: true });
    const ops = (model: Uint8Array) => ['Gelu', 'GeluGrad', 'Erf'].map((op) => onnxOpCount(model, op));
    expect(ops(fused)).toEqual([1, 1, 0]);
    expect(ops(chain)).toEqual([1, 0, 1]); // ONNX Runtime's contrib Gelu, and the backward's chain
    expect(onnxOpCount(chain, 'GatedAdd')).toBe(1);
    const ref = runRef(f, [x, c]);
    const viaKernel = await runOrt(f, [x, c], true, library);
    const viaChain = await runOrt(f, [x, c], true);
    ref.forEach((r, i) => {
      expectClose(viaKernel[i]!.toFloat64(), r.data, 1e-5, `fused Gelu/GeluGrad vs reference (output ${i})`, 1e-6);
      expectClose(viaChain[i]!.toFloat64(), r.data, 1e-5, `ONNX Runtime's ops vs reference (output ${i})`, 1e-6);
    });
  });
  it('gelu keeps ONNX Runtime\'s own Gelu where ONNX Runtime fuses it with its producer: a bias add read only by the Gelu, a convolution with constant weights', () => {
    const param = (shape: number[], seed: number, name: string) => new Parameter(randn(shape, seed).astype('float32'), { name });
    const [w, k, b, m] = [param([8, 4, 3, 3], 40, 'w'), param([8, 8], 41, 'k'), param([8], 42, 'b'), param([8, 8], 43, 'm')];
    // conv → Gelu (NCHWc passes through ORT's), linear with bias → Gelu (BiasGelu), a product without bias → Gelu (volution's)
    const fn = (x: Tensor | undefined) => conv2d(x!, w, undefined, { padding: 1 }).gelu().mean([2, 3]).matmul(k).add(b).gelu().matmul(m).gelu();
    const { bytes } = exportInference(fn, [4, 6, 6], { contribOps: true, kernels: true });
    expect([onnxOpCount(bytes, 'Gelu'), onnxDomainCount(bytes, 'ai.volution'), onnxDomainCount(bytes, 'com.microsoft')]).toEqual([3, 1, 2]);
    // In training the bias add is read again by gelu's gradient, so there is nothing for ONNX Runtime to fuse.
    const wt = param([6, 6], 44, 'wt');
    const bt = param([6], 45, 'bt');
    const step = (x: Tensor) => {
      const loss = x.matmul(wt).add(bt).gelu().sum();
      return [loss, grad(loss, [wt])[0]!];
    };
    const trained = trace(step, [{ dtype: 'float32', shape: [5, 6] }]).graph;
    const model = toOnnx(trained, { contribOps: true, kernels: true, params: 'inputs' });
    expect([onnxOpCount(model, 'Gelu'), onnxOpCount(model, 'GeluGrad'), onnxDomainCount(model, 'ai.volution')]).toEqual([1, 1, 2]);
  });

  it('layer norm and its gradient lower to one LayerNorm and one LayerNormGrad (over the last axis, or a view of several), and to ONNX Runtime\'s own ops otherwise; both equal the reference', async () => {
    const fwdBwd = (x: Tensor, w: Tensor | undefined, b: Tensor | undefined, k: Tensor, wrt: Tensor[]) => {
      const y = layerNorm(x, w, b, 1e-5, w ? w.rank : 1);
      return [y, ...grad(y.mul(k).sum(), wrt)];
    };
    const cases: [string, (x: Tensor, w: Tensor, b: Tensor, k: Tensor) => Tensor[], number[], number[]][] = [
      ['last axis, weight and bias', (x, w, b, k) => fwdBwd(x, w, b, k, [x, w, b]), [300, 6, 40], [40]],
      ['two trailing axes', (x, w, b, k) => fwdBwd(x, w, b, k, [x, w, b]), [5, 6, 7], [6, 7]],
      ['no weight, x only', (x, _w, _b, k) => fwdBwd(x, undefined, undefined, k, [x]), [4, 9, 16], [16]],
    ];
    for (const [what, f, shape, normShape] of cases) {
      const inputs = [randn(shape, 32, 2), randn(normShape, 33), randn(normShape, 34), randn(shape, 35)];
      const graph = trace(f, inputs.map((a) => ({ dtype: 'float32' as const, shape: a.shape }))).graph;
      const fused = toOnnx(graph, { contribOps: true, kernels: true });
      const plain = toOnnx(graph, { contribOps: true });
      expect([onnxOpCount(fused, 'LayerNorm'), onnxOpCount(fused, 'LayerNormGrad'), onnxOpCount(fused, 'LayerNormalization')], what).toEqual([1, 1, 0]);
      expect([onnxOpCount(plain, 'LayerNorm'), onnxOpCount(plain, 'LayerNormGrad'), onnxOpCount(plain, 'LayerNormalization')], what).toEqual([0, 0, 1]);
      const ref = runRef(f, inputs);
      const viaKernel = await runOrt(f, inputs, true, library);
      const viaOrt = await runOrt(f, inputs, true);
      ref.forEach((r, i) => {
        expectClose(viaKernel[i]!.toFloat64(), r.data, 1e-5, `${what}: LayerNormGrad, output ${i}`, 1e-5);
        expectClose(viaOrt[i]!.toFloat64(), r.data, 1e-5, `${what}: ONNX Runtime's ops, output ${i}`, 1e-5);
      });
    }
  });
  it('train-mode batch norm lowers to BatchNormTrain and BatchNormTrainGrad, and to ONNX Runtime\'s own ops otherwise; both equal the reference', async () => {
    // y, the statistics and the gradients of x, w and b; a cotangent on the mean too (its rule adds that term outside the kernel)
    const f = (x: Tensor, w: Tensor, b: Tensor, k: Tensor) => {
      const [y, mean, variance] = batchNormTrain(x, w, b);
      return [y, mean, variance, ...grad(y.mul(k).sum().add(mean.square().sum()), [x, w, b])];
    };
    const cases: [string, number[], number][] = [['[4, 6, 19, 21]', [4, 6, 19, 21], 0], ['mean 40, spread 1', [2, 5, 7, 9], 40], ['rank 2', [33, 7], 0]];
    for (const [what, shape, offset] of cases) {
      const x = randn(shape, 36);
      for (let i = 0; i < x.size; i++) x.data[i] += offset;
      const c = shape[1]!;
      const inputs = [x, randn([c], 37), randn([c], 38), randn(shape, 39)];
      const graph = trace(f, inputs.map((a) => ({ dtype: 'float32' as const, shape: a.shape }))).graph;
      const fused = toOnnx(graph, { contribOps: true, kernels: true });
      expect([onnxOpCount(fused, 'BatchNormTrain'), onnxOpCount(fused, 'BatchNormTrainGrad')], what).toEqual([1, 1]);
      expect(onnxOpCount(toOnnx(graph, { contribOps: true }), 'BatchNormTrainGrad'), what).toBe(0);
      const ref = runRef(f, inputs);
      const viaKernel = await runOrt(f, inputs, true, library);
      const viaOrt = await runOrt(f, inputs, true);
      ref.forEach((r, i) => {
        expectClose(viaKernel[i]!.toFloat64(), r.data, 2e-5, `${what}: volution's kernels, output ${i}`, 1e-5);
        expectClose(viaOrt[i]!.toFloat64(), r.data, 2e-5, `${what}: ONNX Runtime's ops, output ${i}`, 1e-5);
      });
    }
  });
  it('an inference runner with a dynamic batch runs layer norm over two axes on the kernel, at any batch', async () => {
    const f32 = (a: NDArray) => NDArray.float32(a.shape, a.toFloat64());
    const [w, b] = [f32(randn([6, 8], 40)), f32(randn([6, 8], 41))];
    const fn = (x: Tensor) => layerNorm(x, constant(w), constant(b)).mul(2);
    const runner = await createInferenceRunner(fn, [6, 8]);
    for (const batch of [1, 3]) {
      const x = randn([batch, 6, 8], 42 + batch);
      const [ref] = runRef(fn, [x]);
      expectClose((await runner.run(f32(x))).toFloat64(), ref!.data, 1e-5, `batch ${batch}`, 1e-5);
    }
    await runner.release();
    expect(onnxOpCount(exportInference(fn, [6, 8], { contribOps: true, kernels: true }).bytes, 'LayerNorm')).toBe(1);
  });
  it('a run returns new arrays: ONNX Runtime writes static-shape outputs straight into them, and a later run leaves them alone', () => {
    const n = 40;
    const session = NativeOrtSession.create(kernelModel('Gelu', [['x', [n]]], [['y', [n]]]), library!, { threads: 1 });
    const ones = NDArray.float32([n], new Array<number>(n).fill(1));
    const first = session.run({ x: ones }).y!;
    const second = session.run({ x: NDArray.float32([n]) }).y!; // GELU(0) = 0
    session.release();
    expect(first.data).not.toBe(second.data);
    expect([first.data[0], first.data[n - 1]].map((v) => Number(v).toFixed(6))).toEqual(['0.841345', '0.841345']); // Φ(1)
    expect([...second.data].every((v) => v === 0)).toBe(true);
  });

  it('max pooling\'s gradient lowers to one MaxPool2dGrad (no Indices output needed), and to ONNX Runtime\'s own ops otherwise; both equal the reference, ties and −∞ included', async () => {
    const cases: [string, number[], number, number, number][] = [['3×3 s2 p1', [2, 3, 13, 11], 3, 2, 1], ['3×3 s1 p1 (overlapping windows)', [1, 2, 9, 10], 3, 1, 1], ['2×2 s2', [2, 2, 8, 6], 2, 2, 0]];
    for (const [what, shape, k, stride, padding] of cases) {
      const x = randn(shape, 44);
      // ties (rounded values) and −∞ in some windows
      for (let i = 0; i < x.size; i++) x.data[i] = i % 17 === 0 ? -Infinity : Math.round(x.data[i]! * 2) / 2;
      const f = (t: Tensor, c: Tensor) => grad(maxPool2d(t, k, { stride, padding }).mul(c).sum(), [t])[0]!;
      const y = trace((t) => maxPool2d(t, k, { stride, padding }), [{ dtype: 'float32', shape }]).graph.outputs[0]!;
      const c = randn(y.shape, 45);
      const graph = trace(f, [{ dtype: 'float32', shape }, { dtype: 'float32', shape: c.shape }]).graph;
      const fused = toOnnx(graph, { contribOps: true, kernels: true });
      expect([onnxOpCount(fused, 'MaxPool2dGrad'), onnxOpCount(fused, 'ScatterElements')], what).toEqual([1, 0]);
      expect(onnxOpCount(toOnnx(graph, { contribOps: true }), 'ScatterElements'), what).toBe(1);
      const [ref] = runRef(f, [x, c]);
      const [viaKernel] = await runOrt(f, [x, c], true, library);
      const [viaOrt] = await runOrt(f, [x, c], true);
      expectClose(viaKernel!.toFloat64(), ref!.data, 1e-6, `${what}: MaxPool2dGrad`, 1e-6);
      expectClose(viaOrt!.toFloat64(), ref!.data, 1e-6, `${what}: ONNX Runtime's ops`, 1e-6);
    }
  });
});
