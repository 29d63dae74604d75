/**
 * One train-mode forward and backward without an optimizer step — the
 * layout of the official fixtures' `grads.safetensors`: the loss, the
 * train-mode logits, every parameter's gradient (`grad.<key>`) and the
 * BatchNorm buffers after the step (`bn_after.<key>`).
 */
import { grad } from '../autodiff/grad.js';
import { compile, type CompileOptions } from '../backends/compile.js';
import type { NDArray } from '../ir/ndarray.js';
import type { Module } from '../nn/module.js';
import { crossEntropy } from './losses.js';

export interface GradientReport {
  loss: NDArray;
  logits: NDArray;
  /** d loss / d parameter, by state-dict key. */
  grads: Map<string, NDArray>;
  /** Buffers after the step (running_mean, running_var, num_batches_tracked), by state-dict key. */
  buffersAfter: Map<string, NDArray>;
}

/** Mean cross-entropy against int64 `target`, in train mode (drop rates should be 0 for a deterministic result). */
export async function trainModeGradients(model: Module, input: NDArray, target: NDArray, opts: Pick<CompileOptions, 'threads' | 'backend'> = {}): Promise<GradientReport> {
  const named = model.namedParameters();
  const buffers = model.namedBuffers();
  const buffersBefore = new Map(buffers.map(([k, p]) => [k, p.data]));
  const wasTraining = model.training;
  const fn = compile(
    (x, t) => {
      model.train();
      const logits = model.call(x!);
      model.train(wasTraining);
      const loss = crossEntropy(logits, t!);
      return [loss, logits, ...grad(loss, named.map(([, p]) => p))];
    },
    { ...opts, params: 'inputs' },
  );
  const [loss, logits, ...gs] = await fn(input, target);
  await fn.release();
  const buffersAfter = new Map(buffers.map(([k, p]) => [k, p.data]));
  // The report leaves the model as it was: restore the buffers the step updated.
  for (const [k, p] of buffers) p.data = buffersBefore.get(k)!;
  return { loss: loss!, logits: logits!, grads: new Map(named.map(([k], i) => [k, gs[i]!])), buffersAfter };
}
