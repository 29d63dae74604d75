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
import { Parameter, type Tensor, concat, where } from '../tensor/tensor.js';
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
  /** A scalar every gradient is multiplied by (gradient clipping), folded into the update's own passes. */
  gradScale?: Tensor;
}

export interface Optimizer {
  readonly name: string;
  /**
   * Emits the update of every group's parameters. `grads[i]` is group i's
   * gradient as one chunk tensor (see `chunkTensor`), still to be
   * multiplied by `s.gradScale` when that is given. The train step passes
   * chunks (`chunkGroups`) as the groups.
   */
  update(groups: readonly ParamGroup[], grads: readonly Tensor[], s: StepScalars): void;
  /** Optimizer state by `<parameter key>.<slot>` (e.g. `blocks.0.attn.qkv.weight.exp_avg`), for checkpoints. */
  stateDict(): Map<string, NDArray>;
  loadStateDict(sd: ReadonlyMap<string, NDArray>): void;
}

/** Rows a chunk tensor is viewed in (see `chunkTensor`). */
const CHUNK_ROWS = 8;

/** A chunk of `size` elements as its tensors see it: [8, size / 8] when 8 divides it, else flat. */
export function chunkShape(size: number): number[] {
  return size % CHUNK_ROWS === 0 ? [CHUNK_ROWS, size / CHUNK_ROWS] : [size];
}

/**
 * The tensors as one chunk tensor: each flattened, concatenated in order (a
 * single Concat; a single tensor is only reshaped) and viewed in
 * `chunkShape`. Never in a tensor's own shape, even for one: ONNX Runtime
 * broadcasts a scalar over a shape that ends in 1×1 (a pointwise conv's
 * weight) one element at a time, 30× slower than over a long row. Rows of 8
 * rather than one vector: the update's `a + t·scalar` passes run as GatedAdd,
 * which shares rows among threads, and the updated state leaves the graph in
 * this shape (reshaping a graph output is a copy), so one row would run on
 * one thread.
 */
export function chunkTensor(tensors: readonly Tensor[]): Tensor {
  const flat = concat(tensors.map((t) => t.reshape(-1)));
  return flat.reshape(chunkShape(flat.size));
}

/**
 * Elements per optimizer chunk (see `chunkGroups`): 2¹⁷ floats, 512 KB a
 * tensor, so one chunk's update chain stays in a core's 2 MB L2 cache.
 */
export const OPTIMIZER_CHUNK = 1 << 17;

/**
 * By default a group of up to 2²² elements (16 MB a vector) stays whole: its
 * passes already stay in the last-level cache, and every chunk costs another
 * dozen kernel launches (the main job's 1.4 M parameters in 12 chunks: its
 * step 6% slower in one alternating A/B, where two identical graphs differed
 * by 2.5%).
 */
const WHOLE_GROUP_MAX = 1 << 22;

/**
 * Each group split into runs of consecutive parameters of at most
 * `maxElements` elements together; a larger parameter is a chunk of its own.
 * The update rule runs once per chunk, on one tensor each: a dozen kernels per
 * chunk instead of a dozen per parameter (ONNX Runtime's per-node overhead
 * dominates small tensors — PyTorch's "multi-tensor" optimizers make the same
 * trade), and instead of one dozen over the whole model, whose intermediates
 * each make a round trip to memory. Measured on AdamW's 13 passes over 21.4 M
 * floats at one thread: 207 ms flat, 113 ms in chunks of 2¹⁷ (two threads:
 * 111 vs 110). A parameter that is a chunk alone also needs no Concat of its
 * gradient and value and no Split of the result. Without `maxElements`,
 * groups of up to `WHOLE_GROUP_MAX` elements stay whole and larger ones are
 * split into chunks of `OPTIMIZER_CHUNK`.
 */
export function chunkGroups(groups: readonly ParamGroup[], maxElements?: number): ParamGroup[] {
  if (maxElements !== undefined && !(maxElements >= 1)) throw new ConfigError(`optimizer chunk size must be at least 1 element, got ${maxElements}`);
  const chunks: ParamGroup[] = [];
  for (const group of groups) {
    const { params, weightDecay } = group;
    if (maxElements === undefined && params.reduce((n, p) => n + p.data.size, 0) <= WHOLE_GROUP_MAX) {
      chunks.push(group);
      continue;
    }
    const limit = maxElements ?? OPTIMIZER_CHUNK;
    let run: Parameter[] = [];
    let size = 0;
    for (const p of params) {
      if (run.length && size + p.data.size > limit) {
        chunks.push({ params: run, weightDecay });
        run = [];
        size = 0;
      }
      run.push(p);
      size += p.data.size;
    }
    if (run.length) chunks.push({ params: run, weightDecay });
  }
  return chunks;
}

/**
 * The update rule runs on whole chunks of parameters at once (`chunkGroups`):
 * each chunk's parameters, gradients and state are single tensors
 * (`chunkTensor`). The state is stored per chunk and exposed per parameter
 * in `stateDict`.
 */
abstract class ChunkedOptimizer implements Optimizer {
  abstract readonly name: string;
  /** State buffers, chunk tensors, by `<group>:<slot>`. */
  private readonly buffers = new Map<string, Parameter>();
  private layout: readonly (readonly Parameter[])[] = [];
  /** State loaded before the groups were known, assembled when the buffers are made. */
  private pending: ReadonlyMap<string, NDArray> | undefined;

  /** New parameters from parameters `p` and gradients `g`, all one chunk tensor (`chunkTensor`); `state(slot)` gives a state buffer of the same shape. */
  protected abstract rule(p: Tensor, g: Tensor, weightDecay: number, s: StepScalars, state: (slot: string) => Parameter): Tensor;
  protected abstract readonly slotNames: readonly string[];

  update(groups: readonly ParamGroup[], grads: readonly Tensor[], s: StepScalars): void {
    const t = activeTrace();
    this.layout = groups.map((g) => g.params);
    groups.forEach((group, gi) => {
      const next = this.rule(chunkTensor(group.params), grads[gi]!, group.weightDecay, s, (slot) => this.buffer(gi, slot));
      if (group.params.length === 1) {
        // it leaves the graph in the chunk's shape; `compile` views it in its own
        t.assign(group.params[0]!, next.value);
        return;
      }
      const flat = next.reshape(-1);
      let at = 0;
      for (const p of group.params) {
        t.assign(p, flat.slice(0, at, at + p.data.size).value);
        at += p.data.size;
      }
    });
  }

  private buffer(group: number, slot: string): Parameter {
    const key = `${group}:${slot}`;
    let b = this.buffers.get(key);
    if (!b) {
      const params = this.layout[group]!;
      const state = NDArray.float32(chunkShape(params.reduce((n, p) => n + p.data.size, 0)));
      if (this.pending) {
        let at = 0;
        for (const p of params) {
          const saved = this.pending.get(`${p.name}.${slot}`);
          if (saved) state.data.set(saved.astype('float32').data as Float32Array, at);
          at += p.data.size;
        }
      }
      b = new Parameter(state, { name: `optimizer.group${group}.${slot}`, trainable: false });
      this.buffers.set(key, b);
    }
    return b;
  }

  stateDict(): Map<string, NDArray> {
    const out = new Map<string, NDArray>();
    this.layout.forEach((params, gi) => {
      for (const slot of this.slotNames) {
        const b = this.buffers.get(`${gi}:${slot}`);
        if (!b) continue;
        const data = b.data.data as Float32Array;
        let at = 0;
        for (const p of params) {
          out.set(`${p.name}.${slot}`, new NDArray('float32', p.data.shape, data.slice(at, at + p.data.size)));
          at += p.data.size;
        }
      }
    });
    return out;
  }

  loadStateDict(sd: ReadonlyMap<string, NDArray>): void {
    this.pending = sd;
    // Buffers made already (a step ran): refill them in place of the old state.
    const made = [...this.buffers.keys()];
    this.buffers.clear();
    for (const key of made) {
      const [group, slot] = key.split(':') as [string, string];
      this.buffer(Number(group), slot);
    }
  }
}

export interface SgdOptions {
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}

export class SGD extends ChunkedOptimizer {
  readonly name = 'sgd';
  protected readonly slotNames = ['momentum_buffer'];
  constructor(readonly opts: SgdOptions = {}) {
    super();
    if (opts.nesterov && !(opts.momentum && !opts.dampening)) throw new ConfigError('SGD: Nesterov momentum requires momentum > 0 and dampening = 0');
  }

  protected rule(p: Tensor, grad: Tensor, weightDecay: number, { lr, step, gradScale }: StepScalars, state: (slot: string) => Parameter): Tensor {
    const mu = this.opts.momentum ?? 0;
    const damp = this.opts.dampening ?? 0;
    const scaled = gradScale ? grad.mul(gradScale) : grad;
    let g = weightDecay ? scaled.add(p.mul(weightDecay)) : scaled;
    if (mu) {
      const buf = state('momentum_buffer');
      // torch.optim.SGD: the first step sets buf = g (no dampening)
      const next = where(step.eq(1), g, buf.mul(mu).add(g.mul(1 - damp)));
      activeTrace().assign(buf, next.value);
      g = this.opts.nesterov ? g.add(next.mul(mu)) : next;
    }
    return p.sub(g.mul(lr));
  }
}

export interface AdamWOptions {
  betas?: readonly [number, number];
  eps?: number;
}

export class AdamW extends ChunkedOptimizer {
  readonly name = 'adamw';
  protected readonly slotNames = ['exp_avg', 'exp_avg_sq'];
  constructor(readonly opts: AdamWOptions = {}) {
    super();
  }

  /**
   * torch.optim.AdamW with every scalar factor moved onto the scalars, since
   * each full-size op is a pass over all the parameters: with g scaled by s,
   * m₁ = β₁m + ((1−β₁)s)·g, v₁ = β₂v + ((1−β₂)s²)·g², and
   * m₁ / (√v₁/√bc₂ + ε) = √bc₂·m₁ / (√v₁ + ε√bc₂). Each `a + t·scalar` is
   * one pass on ORT (GatedAdd, see emit/scaled_add.ts): 10 passes with
   * weight decay and clipping, where the textbook order takes 15.
   */
  protected rule(p: Tensor, g: Tensor, weightDecay: number, { lr, step, gradScale }: StepScalars, state: (slot: string) => Parameter): Tensor {
    const t = activeTrace();
    const [b1, b2] = this.opts.betas ?? [0.9, 0.999];
    const eps = this.opts.eps ?? 1e-8;
    // bias corrections as graph scalars: 1 − β^t
    const bc1 = step.mul(Math.log(b1)).exp().neg().add(1);
    const rootBc2 = step.mul(Math.log(b2)).exp().neg().add(1).sqrt();
    const m = state('exp_avg');
    const v = state('exp_avg_sq');
    const m1 = m.mul(b1).add(g.mul(gradScale ? gradScale.mul(1 - b1) : 1 - b1));
    // g·g is the same node as the clipping norm's g² (ORT's common-subexpression pass keeps one)
    const v1 = v.mul(b2).add(g.mul(g).mul(gradScale ? gradScale.square().mul(1 - b2) : 1 - b2));
    const update = m1.div(v1.sqrt().add(rootBc2.mul(eps))).mul(lr.mul(rootBc2).div(bc1));
    t.assign(m, m1.value);
    t.assign(v, v1.value);
    return (weightDecay ? p.mul(lr.mul(-weightDecay).add(1)) : p).sub(update);
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
