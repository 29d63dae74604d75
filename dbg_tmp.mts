import { createModel, listModels } from './src/index.js';
let total = 0;
for (const name of listModels()) {
  const t0 = performance.now();
  const m = createModel(name, {}, { init: false });
  const dt = performance.now() - t0; total += dt;
  if (dt > 1500) console.log(name, (dt / 1000).toFixed(1), 's', m.numParams());
}
console.log('models', listModels().length, 'total s', (total / 1000).toFixed(1));
