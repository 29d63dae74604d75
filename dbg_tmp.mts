import { createModel, runModule, NDArray } from './src/index.js';
const m = createModel('xvolution_resnet34').eval();
const x = NDArray.float32([1, 3, 224, 224]);
for (let i = 0; i < x.size; i++) x.data[i] = Math.sin(i * 0.001);
const r = await runModule(m, x, { activations: true, backend: 'ort' });
for (const [k, v] of r.activations) {
  const d = v.toFloat64(); let bad = 0, mx = 0;
  for (const e of d) { if (!Number.isFinite(e)) bad++; else mx = Math.max(mx, Math.abs(e)); }
  if (bad || mx > 1e6) { console.log(k, v.shape, 'nonfinite', bad, 'max', mx); }
}
