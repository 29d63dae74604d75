/**
 * Optimizers as graph code: the update of every parameter and of the
 * optimizer state is emitted into the train-step graph, and written back
 * through `Trace.assign` (so the whole step is one ONNX graph). Scalars that
 * change per step (learning rate, bias corrections) are graph inputs.
 * Formulas follow torch.optim exactly (SGD with momentum/Nesterov/dampening,
 * AdamW with decoupled weight decay).
 */
import { ConfigError } from '../errors.js';
import { NDArray } from '../ir/ndarray.js';
import { Parameter, type Tensor, where } from '../tensor/tensor.js';
import { activeTrace } from '../tensor/trace.js';

export interface ParamGroup {
  params: readonly Parameter[];
  weightDecay: number;
}

/** The per-step scalars an optimizer needs, fed as graph inputs. */
export interface StepScalars {
  lr: Tensor;
  /** 1-based step count, as float. */
  step: Tensor;
}

export interface Optimizer {
  readonly name: string;
  /** Emits the update of every parameter in `groups` given its gradient. */
  update(groups: readonly ParamGroup[], grads: ReadonlyMap<Parameter, Tensor>, s: StepScalars): void;
  /** Optimizer state tensors by a stable key (for checkpoints). */
  stateDict(): Map<string, NDArray>;
  loadStateDict(sd: ReadonlyMap<string, NDArray>): void;
}

function zerosLike(p: Parameter, name: string): Parameter {
  return new Parameter(NDArray.float32(p.data.shape), { name, trainable: false });
}

abstract class StatefulOptimizer implements Optimizer {
  abstract readonly name: string;
  protected readonly slots = new Map<string, Parameter>();

  protected slot(p: Parameter, kind: string): Parameter {
    const key = `${p.name}.${kind}`;
    let s = this.slots.get(key);
    if (!s) {
      s = zerosLike(p, `optim.${key}`);
      this.slots.set(key, s);
    }
    return s;
  }

  abstract update(groups: readonly ParamGroup[], grads: ReadonlyMap<Parameter, Tensor>, s: StepScalars): void;

  stateDict(): Map<string, NDArray> {
    return new Map([...this.slots].map(([k, p]) => [k, p.data]));
  }

  loadStateDict(sd: ReadonlyMap<string, NDArray>): void {
    for (const [k, v] of sd) {
      const existing = this.slots.get(k);
      if (existing) existing.data = v;
      else this.slots.set(k, new Parameter(v, { name: `optim.${k}`, trainable: false }));
    }
  }
}

export interface SgdOptions {
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}

export class SGD extends StatefulOptimizer {
  readonly name = 'sgd';
  constructor(readonly opts: SgdOptions = {}) {
    super();
    if (opts.nesterov && !(opts.momentum && !opts.dampening)) throw new ConfigError('SGD: Nesterov momentum requires momentum > 0 and dampening = 0');
  }

  update(groups: readonly ParamGroup[], grads: ReadonlyMap<Parameter, Tensor>, { lr, step }: StepScalars): void {
    const t = activeTrace();
    const mu = this.opts.momentum ?? 0;
    const damp = this.opts.dampening ?? 0;
    for (const { params, weightDecay } of groups) {
      for (const p of params) {
        let g = grads.get(p)!;
        if (weightDecay) g = g.add(p.mul(weightDecay));
        if (mu) {
          const buf = this.slot(p, 'momentum_buffer');
          // torch.optim.SGD: the first step sets buf = g (no dampening)
          const next = where(step.eq(1), g, buf.mul(mu).add(g.mul(1 - damp)));
          t.assign(buf, next.value);
          g = this.opts.nesterov ? g.add(next.mul(mu)) : next;
        }
        t.assign(p, p.sub(g.mul(lr)).value);
      }
    }
  }
}

export interface AdamWOptions {
  betas?: readonly [number, number];
  eps?: number;
}

export class AdamW extends StatefulOptimizer {
  readonly name = 'adamw';
  constructor(readonly opts: AdamWOptions = {}) {
    super();
  }

  update(groups: readonly ParamGroup[], grads: ReadonlyMap<Parameter, Tensor>, { lr, step }: StepScalars): void {
    const t = activeTrace();
    const [b1, b2] = this.opts.betas ?? [0.9, 0.999];
    const eps = this.opts.eps ?? 1e-8;
    // bias corrections as graph scalars: 1 − β^t
    const bc1 = step.mul(Math.log(b1)).exp().neg().add(1);
    const bc2 = step.mul(Math.log(b2)).exp().neg().add(1);
    for (const { params, weightDecay } of groups) {
      for (const p of params) {
        const g = grads.get(p)!;
        const m = this.slot(p, 'exp_avg');
        const v = this.slot(p, 'exp_avg_sq');
        const decayed = weightDecay ? p.mul(lr.mul(-weightDecay).add(1)) : p;
        const m1 = m.mul(b1).add(g.mul(1 - b1));
        const v1 = v.mul(b2).add(g.mul(g).mul(1 - b2));
        const denom = v1.sqrt().div(bc2.sqrt()).add(eps);
        t.assign(m, m1.value);
        t.assign(v, v1.value);
        t.assign(p, decayed.sub(m1.div(denom).mul(lr.div(bc1))).value);
      }
    }
  }
}

/**
 * Parameter groups as the official recipes build them: no weight decay on
 * 1-D tensors (norms, biases) and on position embeddings, class tokens and
 * relative-position tables.
 */
export function paramGroups(named: readonly (readonly [string, Parameter])[], weightDecay: number, noDecayNames: readonly string[] = ['pos_embed', 'cls_token', 'relative_position_bias_table', 'absolute_pos_embed', 'pos_layer_embed']): ParamGroup[] {
  const decay: Parameter[] = [];
  const noDecay: Parameter[] = [];
  for (const [name, p] of named) {
    const skip = p.data.rank <= 1 || name.endsWith('.bias') || noDecayNames.some((n) => name.split('.').includes(n) || name.endsWith(n));
    (skip ? noDecay : decay).push(p);
  }
  return [
    { params: decay, weightDecay },
    { params: noDecay, weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}
