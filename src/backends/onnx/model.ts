/**
 * IR → ONNX ModelProto bytes (opset 17, IR version 8). Each primitive's
 * lowering lives in `emit/`; this file owns naming, constants, initializers
 * and the protobuf messages.
 */
import { RuntimeFailure } from '../../errors.js';
import type { Graph, Node, Value } from '../../ir/graph.js';
import { type DType, NDArray, numel, sameShape } from '../../ir/ndarray.js';
import { ONNX_DTYPE_CODE as ONNX_DTYPE } from './dtypes.js';
import { EMITTERS } from './emit/index.js';
import { reshapeSource } from './emit/layout.js';
import { type ScaledAdd, emitScaledAdd, planScaledAdds } from './emit/scaled_add.js';
import { ProtoWriter } from './protobuf.js';

export const OPSET = 17;
const IR_VERSION = 8;
import { NCHWC_DOMAIN, VOLUTION_DOMAIN, hasFusedKernel } from './emit/types.js';
export { MS_DOMAIN, VOLUTION_DOMAIN } from './emit/types.js';

export type OnnxAttr =
  | { readonly int: number }
  | { readonly float: number }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] }
  | { readonly str: string }
  | { readonly tensor: NDArray }
  | { readonly graph: ProtoWriter };

function tensorProto(name: string, a: NDArray): ProtoWriter {
  const w = new ProtoWriter();
  if (a.shape.length) w.packedInts(1, a.shape);
  w.int(2, ONNX_DTYPE[a.dtype]);
  w.string(8, name);
  const d = a.data;
  w.bytes(9, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  return w;
}

function attrProto(name: string, a: OnnxAttr): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  // AttributeProto: f=2 i=3 s=4 t=5 g=6 floats=7 ints=8 type=20
  if ('int' in a) w.int(3, a.int).int(20, 2);
  else if ('float' in a) w.float(2, a.float).int(20, 1);
  else if ('ints' in a) w.packedInts(8, a.ints).int(20, 7);
  else if ('floats' in a) {
    for (const f of a.floats) w.float(7, f);
    w.int(20, 6);
  } else if ('str' in a) w.string(4, a.str).int(20, 3);
  else if ('graph' in a) w.message(6, a.graph).int(20, 5);
  else w.message(5, tensorProto('', a.tensor)).int(20, 4);
  return w;
}

function valueInfo(name: string, dtype: DType, shape: readonly (number | string)[]): ProtoWriter {
  const dims = new ProtoWriter();
  for (const d of shape) dims.message(1, typeof d === 'number' ? new ProtoWriter().int(1, d) : new ProtoWriter().string(2, d));
  const tensorType = new ProtoWriter().int(1, ONNX_DTYPE[dtype]).message(2, dims);
  return new ProtoWriter().string(1, name).message(2, new ProtoWriter().message(1, tensorType));
}

/** One emitted ONNX node (serialised at the end, once graph outputs have their names). */
interface NodeSpec {
  readonly opType: string;
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, OnnxAttr>>;
  readonly domain: string;
}

function nodeProto(n: NodeSpec, rename: ReadonlyMap<string, string>): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, rename.get(i) ?? i);
  for (const o of n.outputs) w.string(2, rename.get(o) ?? o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, a] of Object.entries(n.attrs)) w.message(5, attrProto(k, a));
  if (n.domain) w.string(7, n.domain);
  return w;
}

/** Per-model emission state handed to each op's lowering. */
export class EmitContext {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: ProtoWriter[] = [];
  /** Non-default operator domains the emitted nodes use, with their opset versions. */
  readonly domains = new Map<string, number>();
  /** Whether lowerings may use ONNX Runtime's contrib ops (see `EmitOptions.contribOps`). */
  readonly contribOps: boolean;
  /** ONNX Runtime's NCHWc block size for runtime-weight convs, 0 for none (see `EmitOptions.nchwcBlock`). */
  readonly nchwcBlock: number;
  /** Whether every shape is the traced one (no dynamic-batch `shapeTargets`), so lowerings may bake sizes in. */
  readonly fixedShapes: boolean;
  private readonly names = new Map<Value, string>();
  private readonly constCache = new Map<string, string>();
  private readonly staticMemo = new Map<Value, boolean>();
  private readonly blocked = new Map<string, string>();
  private counter = 0;
  private current: Node | undefined;

  /**
   * @param uses how many emitted nodes and graph outputs read each value (lowerings skip optional outputs nobody reads)
   * @param prefix of the names it makes (a graph and its subgraphs share one namespace)
   */
  constructor(
    private readonly opts: Pick<EmitOptions, 'contribOps' | 'nchwcBlock' | 'kernels' | 'params' | 'shapeTargets'> = {},
    private readonly uses?: ReadonlyMap<Value, number>,
    private readonly prefix = '',
  ) {
    this.contribOps = opts.contribOps ?? false;
    this.fixedShapes = opts.shapeTargets === undefined;
    this.nchwcBlock = opts.contribOps ? (opts.nchwcBlock ?? 0) : 0;
  }

  /** Whether `node` lowers to one of volution's fused kernels: it has one, and the session loads them (`EmitOptions.kernels`). */
  fusedKernel(node: Node): boolean {
    return (this.opts.kernels ?? false) && hasFusedKernel(node);
  }

  /**
   * Whether `v` is known when the model loads: computed from constants and
   * baked parameters only, so ONNX Runtime folds it and pre-packs it as a weight.
   */
  isStatic(v: Value): boolean {
    // Depth-first with an explicit stack: a weight computed from activations can sit thousands of nodes deep.
    const stack = [v];
    while (stack.length) {
      const top = stack.at(-1)!;
      if (this.staticMemo.has(top)) {
        stack.pop();
        continue;
      }
      if (!top.producer) {
        this.staticMemo.set(top, top.role === 'param' && (this.opts.params ?? 'initializers') === 'initializers');
        continue;
      }
      const inputs = top.producer.inputs;
      const pending = inputs.filter((i) => !this.staticMemo.has(i));
      if (pending.length) stack.push(...pending);
      else this.staticMemo.set(top, inputs.every((i) => this.staticMemo.get(i)));
    }
    return this.staticMemo.get(v)!;
  }

  /** Whether anything reads `v` (true when unknown). */
  isUsed(v: Value): boolean {
    return this.uses?.has(v) ?? true;
  }

  /** How many nodes and graph outputs read `v` (undefined when unknown). */
  useCount(v: Value): number | undefined {
    return this.uses && (this.uses.get(v) ?? 0);
  }

  name(v: Value): string {
    let n = this.names.get(v);
    if (!n) {
      n = `v${v.id}`;
      this.names.set(v, n);
    }
    return n;
  }

  bind(v: Value, name: string): void {
    this.names.set(v, name);
  }

  fresh(hint = 't'): string {
    return `${this.prefix}${hint}_${this.counter++}`;
  }

  /**
   * Emits one ONNX node; returns its output names (`outputs` fresh names unless given).
   * A node of another `domain` (e.g. `MS_DOMAIN`) adds that domain's opset import, version 1.
   */
  node(opType: string, inputs: readonly string[], attrs: Readonly<Record<string, OnnxAttr>> = {}, outputs: number | readonly string[] = 1, domain = ''): string[] {
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.fresh(opType)) : [...outputs];
    const scope = this.current?.scope ? `${this.current.scope}/` : '';
    if (domain) this.domains.set(domain, 1);
    this.nodes.push({ opType, name: `${scope}${opType}_${this.counter++}`, inputs: [...inputs], outputs: outs, attrs, domain });
    return outs;
  }

  /**
   * The NCHW tensor `x` in ONNX Runtime's NCHWc layout (channels in blocks of
   * `nchwcBlock`): one ReorderInput however many convs read it.
   */
  nchwc(x: string): string {
    let r = this.blocked.get(x);
    if (!r) this.blocked.set(x, (r = this.node('ReorderInput', [x], {}, 1, NCHWC_DOMAIN)[0]!));
    return r;
  }

  /** An initializer holding `a` (deduplicated for small constants). */
  constant(a: NDArray, hint = 'const'): string {
    const small = a.size <= 64;
    const key = small ? `${a.dtype}|${a.shape.join(',')}|${Array.from(a.data as ArrayLike<number | bigint>, String).join(',')}` : '';
    if (small && this.constCache.has(key)) return this.constCache.get(key)!;
    const name = this.fresh(hint);
    this.initializers.push(tensorProto(name, a));
    if (small) this.constCache.set(key, name);
    return name;
  }

  /** A constant of `shape` filled with `v` in `dtype`, one initializer per (dtype, shape, v) whatever its size. */
  filled(dtype: DType, shape: readonly number[], v: number): string {
    const key = `filled|${dtype}|${shape.join(',')}|${Object.is(v, -0) ? '-0' : v}`;
    let name = this.constCache.get(key);
    if (!name) {
      const n = numel(shape);
      const a =
        dtype === 'bool' ? new NDArray('bool', shape, new Uint8Array(n).fill(v ? 1 : 0))
        : dtype === 'int64' ? NDArray.int64(shape, new Array<number>(n).fill(v))
        : dtype === 'float64' ? NDArray.float64(shape, new Float64Array(n).fill(v))
        : NDArray.float32(shape, new Float32Array(n).fill(v));
      this.constCache.set(key, (name = this.constant(a, 'fill')));
    }
    return name;
  }

  ints(vs: readonly number[]): string {
    return this.constant(NDArray.int64([vs.length], vs), 'shape');
  }

  /** `t` reshaped to a fixed `shape` (−1 inferred). */
  reshape(t: string, shape: readonly number[]): string {
    return this.node('Reshape', [t, this.ints(shape)])[0]!;
  }

  scalar(v: number, dtype: DType): string {
    const a = dtype === 'float64' ? NDArray.float64([], [v]) : dtype === 'int64' ? NDArray.int64([], [v]) : NDArray.float32([], [v]);
    return this.constant(a, 'scalar');
  }

  /** @internal */
  setCurrent(n: Node | undefined): void {
    this.current = n;
  }
}

/** A reshape/expand target: −1 is inferred (Reshape), 'batch' is dim 0 of the first graph input at run time. */
export type ShapeTarget = readonly (number | 'batch')[];

/** Emits a reshape/expand with a target that may use the runtime batch (Shape of the first input, dim 0). */
function emitShapeTarget(ctx: EmitContext, node: Node, x: string, target: ShapeTarget, batch: () => string): string[] {
  const shape = target.includes('batch')
    ? ctx.node('Concat', target.map((d) => (d === 'batch' ? batch() : ctx.ints([d]))), { axis: { int: 0 } })[0]!
    : ctx.ints(target as readonly number[]);
  return node.op === 'reshape' ? ctx.node('Reshape', [reshapeSource(ctx, node, x), shape]) : ctx.node('Expand', [x, shape]);
}

export interface EmitOptions {
  /** How the graph's 'param' inputs are stored: as initializers (inference) or as graph inputs (training). */
  params?: 'initializers' | 'inputs';
  /** Values of the 'param' inputs, required with params = 'initializers'. */
  paramValues?: ReadonlyMap<Value, NDArray>;
  /** Names for the graph outputs (default `output_i`). */
  outputNames?: readonly string[];
  /** Symbolic dimension names for input/output shapes, e.g. {0: 'batch'} (used by export). */
  symbolicDims?: ReadonlyMap<Value, ReadonlyMap<number, string>>;
  /**
   * Targets to emit for `reshape`/`expand` nodes instead of their static
   * shapes (dynamic-batch export, see `passes/dynamic_batch.ts`).
   */
  shapeTargets?: ReadonlyMap<Node, ShapeTarget>;
  /**
   * Let lowerings use ONNX Runtime's contrib ops (domain `com.microsoft`, e.g.
   * its fused Gelu kernel) where they are faster. Default false: the file
   * then uses standard ONNX only and runs anywhere. The in-process sessions
   * (`compile`, `runModule`, the train step) turn it on.
   */
  contribOps?: boolean;
  /**
   * ONNX Runtime's NCHWc block size on this machine (`nchwcBlockSize()`), with
   * `contribOps`. Convolutions whose weights are computed at run time (graph
   * inputs in training) then use its blocked-layout kernels (domain
   * `com.microsoft.nchwc`), which ONNX Runtime itself applies only to
   * constant weights. 0 or unset: plain `Conv`.
   */
  nchwcBlock?: number;
  /**
   * Let lowerings use volution's fused kernels (`native/volution_kernels.c`,
   * domain `ai.volution`), for a session that registers that library
   * (`OrtOptions.kernelLibrary`). Default false.
   */
  kernels?: boolean;
  producer?: string;
  docString?: string;
  metadata?: Readonly<Record<string, string>>;
}

/** The ONNX names of the graph inputs: their own names, sanitised and made unique. */
export function onnxInputNames(graph: Graph): Map<Value, string> {
  const used = new Set<string>();
  const names = new Map<Value, string>();
  for (const v of graph.inputs) {
    let name = (v.name || `input_${v.id}`).replace(/[^A-Za-z0-9_.:/-]/g, '_');
    while (used.has(name)) name = `${name}_`;
    used.add(name);
    names.set(v, name);
  }
  return names;
}

/** The emission of a graph's nodes, shared by `toOnnx` and `toOnnxLoop`. */
function emissionOf(graph: Graph, opts: EmitOptions): { live: Node[]; uses: Map<Value, number>; ctx: EmitContext; shapeOf: (v: Value) => (number | string)[] } {
  const live = graph.liveNodes();
  const uses = new Map<Value, number>();
  for (const v of [...live.flatMap((n) => n.inputs), ...graph.outputs]) uses.set(v, (uses.get(v) ?? 0) + 1);
  const ctx = new EmitContext(opts, uses);
  const shapeOf = (v: Value) => {
    const sym = opts.symbolicDims?.get(v);
    return v.shape.map((d, i) => sym?.get(i) ?? d);
  };
  return { live, uses, ctx, shapeOf };
}

/** Binds a 'param' input as an initializer or a graph input (`inputsInfo`), as `opts.params` says. */
function bindParamOrInput(ctx: EmitContext, v: Value, name: string, opts: EmitOptions, inputsInfo: ProtoWriter[], shape: readonly (number | string)[]): void {
  ctx.bind(v, name);
  if (v.role === 'param' && (opts.params ?? 'initializers') === 'initializers') {
    const val = opts.paramValues?.get(v);
    if (!val) throw new RuntimeFailure(`onnx: no value for parameter '${v.name}'`);
    ctx.initializers.push(tensorProto(name, val));
  } else inputsInfo.push(valueInfo(name, v.dtype, shape));
}

/** Emits every live node's lowering into `ctx` (graph inputs already bound). */
function emitNodes(graph: Graph, { live, uses, ctx }: { live: readonly Node[]; uses: ReadonlyMap<Value, number>; ctx: EmitContext }, opts: EmitOptions): void {
  // GatedAdd's views bake in the traced sizes.
  const scaledAdds = ctx.contribOps && ctx.fixedShapes ? planScaledAdds(live, uses, new Set(graph.outputs)) : new Map<Node, ScaledAdd>();
  const absorbed = new Set([...scaledAdds.values()].map((s) => s.mul));
  let batchName: string | undefined;
  const batch = () => {
    const first = graph.inputs.find((v) => v.role === 'input');
    if (!first) throw new RuntimeFailure('onnx: a batch-dependent shape target needs a graph input to take the batch from');
    return (batchName ??= ctx.node('Shape', [ctx.name(first)], { start: { int: 0 }, end: { int: 1 } })[0]!);
  };
  for (const node of live) {
    if (absorbed.has(node)) continue;
    const emitter = EMITTERS[node.op];
    if (!emitter) throw new RuntimeFailure(`onnx: op '${node.op}' has no ONNX lowering`);
    ctx.setCurrent(node);
    const inputs = node.inputs.map((v) => ctx.name(v));
    const target = opts.shapeTargets?.get(node);
    const scaled = scaledAdds.get(node);
    const outs =
      target ? emitShapeTarget(ctx, node, inputs[0]!, target, batch)
      : scaled ? emitScaledAdd(ctx, scaled)
      : (emitter as (c: EmitContext, n: Node, i: readonly string[]) => string[])(ctx, node, inputs);
    // A lowering may leave out an optional output nobody reads (it returns fewer names).
    node.outputs.forEach((v, i) => {
      if (outs[i] !== undefined) ctx.bind(v, outs[i]);
      else if (uses.has(v)) throw new RuntimeFailure(`onnx: the lowering of '${node.op}' left out output ${i}, which is used`);
    });
  }
  ctx.setCurrent(undefined);
}

/**
 * Gives graph outputs stable names: a node's output is renamed (no copy); an
 * output that is a graph input, a constant or repeated is copied with Identity.
 */
function nameOutputs(ctx: EmitContext, outputs: readonly (readonly [src: string, name: string])[]): Map<string, string> {
  const produced = new Set(ctx.nodes.flatMap((n) => n.outputs));
  const rename = new Map<string, string>();
  for (const [src, name] of outputs) {
    if (produced.has(src) && !rename.has(src)) rename.set(src, name);
    else ctx.node('Identity', [rename.get(src) ?? src], {}, [name]);
  }
  return rename;
}

/** Serialises `graph` as an ONNX model. Graph inputs keep their names (made unique). */
export function toOnnx(graph: Graph, opts: EmitOptions = {}): Uint8Array {
  const emission = emissionOf(graph, opts);
  const { ctx, shapeOf } = emission;
  const inputsInfo: ProtoWriter[] = [];
  const names = onnxInputNames(graph);
  for (const v of graph.inputs) bindParamOrInput(ctx, v, names.get(v)!, opts, inputsInfo, shapeOf(v));
  emitNodes(graph, emission, opts);
  const outNames = graph.outputs.map((_, i) => opts.outputNames?.[i] ?? `output_${i}`);
  const rename = nameOutputs(ctx, graph.outputs.map((v, i) => [ctx.name(v), outNames[i]!]));
  const outputsInfo = graph.outputs.map((v, i) => valueInfo(outNames[i]!, v.dtype, shapeOf(v)));
  return modelProto(graphProto(ctx, inputsInfo, outputsInfo, rename, 'volution'), ctx.domains, opts);
}

/** How `toOnnxLoop` runs a graph as one step of an ONNX Loop. */
export interface LoopSpec {
  /** Graph inputs that differ from step to step: fed stacked along a new first axis, whose length is the number of steps. */
  readonly perStep: readonly Value[];
  /** The state a step hands to the next: [graph input, index of the graph output holding its next value]. */
  readonly carried: readonly (readonly [input: Value, output: number])[];
  /** The graph outputs read after every step (the first ones): they come back stacked along a first axis. */
  readonly perStepOutputs: number;
}

/**
 * Serialises `graph` as the body of an ONNX `Loop` that runs it once per
 * step, each step reading the state (`carried`) the one before left: one
 * ONNX Runtime run for any number of steps, planned as one step. Inputs
 * keep their names (per-step ones get a first axis, 'steps'); outputs are
 * named `output_i` as in `toOnnx`: the per-step ones stacked, the carried
 * ones after the last step. Inputs that are neither per-step nor carried
 * stay the same for every step.
 */
export function toOnnxLoop(graph: Graph, opts: EmitOptions, loop: LoopSpec): Uint8Array {
  if (!loop.perStep.length) throw new RuntimeFailure('onnx: a loop needs a per-step input (its first axis is the number of steps)');
  const carriedOf = new Map(loop.carried);
  const outputOf = new Set(loop.carried.map(([, i]) => i));
  graph.outputs.forEach((_, i) => {
    if (i >= loop.perStepOutputs && !outputOf.has(i)) throw new RuntimeFailure(`onnx: loop output ${i} is neither read per step nor carried to the next step`);
  });
  const stepOutputs = graph.outputs.slice(0, loop.perStepOutputs);
  const emission = emissionOf(graph, opts);
  const { ctx, shapeOf } = emission;
  const names = onnxInputNames(graph);
  const perStep = new Set(loop.perStep);
  const outerInputs: ProtoWriter[] = [];
  const bodyInputs = [valueInfo('step.iter', 'int64', []), valueInfo('step.cond', 'bool', [])];
  const outer = new EmitContext({}, undefined, 'loop.');
  for (const v of graph.inputs) {
    const name = names.get(v)!;
    if (perStep.has(v)) {
      outerInputs.push(valueInfo(name, v.dtype, ['steps', ...shapeOf(v)]));
      ctx.bind(v, ctx.node('Gather', [name, 'step.iter'], { axis: { int: 0 } })[0]!);
    } else if (carriedOf.has(v)) outerInputs.push(valueInfo(name, v.dtype, v.shape));
    else bindParamOrInput(ctx, v, name, opts, outerInputs, shapeOf(v));
  }
  // The state travels in the shape of the value assigned to it (a flat slice of an optimizer chunk, say): no copy.
  const initial = loop.carried.map(([v, out]) => {
    const name = names.get(v)!;
    const shape = graph.outputs[out]!.shape;
    const same = sameShape(shape, v.shape);
    bodyInputs.push(valueInfo(`state.${name}`, v.dtype, shape));
    ctx.bind(v, same ? `state.${name}` : ctx.reshape(`state.${name}`, v.shape));
    return same ? name : outer.node('Reshape', [name, outer.ints(shape)])[0]!;
  });
  emitNodes(graph, emission, opts);
  const carriedOut = loop.carried.map(([v, i]) => {
    const src = ctx.name(graph.outputs[i]!);
    // The state keeps its dtype from step to step.
    return graph.outputs[i]!.dtype === v.dtype ? src : ctx.node('Cast', [src], { to: { int: ONNX_DTYPE[v.dtype] } })[0]!;
  });
  const bodyOut: [string, string][] = [
    ['step.cond', 'step.cond_out'],
    ...carriedOut.map((src, k): [string, string] => [src, `step.next_${k}`]),
    ...stepOutputs.map((v, i): [string, string] => [ctx.name(v), `step.out_${i}`]),
  ];
  const rename = nameOutputs(ctx, bodyOut);
  const bodyOutputs = [
    valueInfo('step.cond_out', 'bool', []),
    ...loop.carried.map(([v, i], k) => valueInfo(`step.next_${k}`, v.dtype, graph.outputs[i]!.shape)),
    ...stepOutputs.map((v, i) => valueInfo(`step.out_${i}`, v.dtype, v.shape)),
  ];
  const body = graphProto(ctx, bodyInputs, bodyOutputs, rename, 'step');

  // The outer graph: the number of steps from the first per-step input, then the loop.
  const steps = outer.node('Squeeze', outer.node('Shape', [names.get(loop.perStep[0]!)!], { start: { int: 0 }, end: { int: 1 } }))[0]!;
  const always = outer.constant(new NDArray('bool', [], new Uint8Array([1])), 'true');
  const finals = loop.carried.map(([, i]) => `output_${i}`);
  outer.node('Loop', [steps, always, ...initial], { body: { graph: body } }, [...finals, ...stepOutputs.map((_, i) => `output_${i}`)]);
  const outerOutputs = [
    ...loop.carried.map(([v, i]) => valueInfo(`output_${i}`, v.dtype, graph.outputs[i]!.shape)),
    ...stepOutputs.map((v, i) => valueInfo(`output_${i}`, v.dtype, ['steps', ...v.shape])),
  ];
  for (const [d, version] of ctx.domains) outer.domains.set(d, version);
  return modelProto(graphProto(outer, outerInputs, outerOutputs, new Map(), 'volution'), outer.domains, opts);
}

function graphProto(ctx: EmitContext, inputsInfo: readonly ProtoWriter[], outputsInfo: readonly ProtoWriter[], rename: ReadonlyMap<string, string>, name: string): ProtoWriter {
  const g = new ProtoWriter();
  for (const n of ctx.nodes) g.message(1, nodeProto(n, rename));
  g.string(2, name);
  for (const t of ctx.initializers) g.message(5, t);
  for (const i of inputsInfo) g.message(11, i);
  for (const o of outputsInfo) g.message(12, o);
  return g;
}

function modelProto(graph: ProtoWriter, domains: ReadonlyMap<string, number>, opts: EmitOptions): Uint8Array {
  const m = new ProtoWriter();
  m.int(1, IR_VERSION);
  m.string(2, opts.producer ?? 'volution');
  m.string(3, '0.1.0');
  if (opts.docString) m.string(6, opts.docString);
  m.message(7, graph);
  m.message(8, new ProtoWriter().string(1, '').int(2, OPSET));
  for (const [domain, version] of domains) m.message(8, new ProtoWriter().string(1, domain).int(2, version));
  for (const [k, val] of Object.entries(opts.metadata ?? {})) m.message(14, new ProtoWriter().string(1, k).string(2, val));
  return m.finish();
}

/**
 * A one-node model, `ReorderInput` on a [1, 4, 1, 1] input: its output has 4
 * channels rounded up to ONNX Runtime's NCHWc block size on this machine (see
 * `nchwcBlockSize`); a build without the NCHWc kernels refuses to load it.
 */
export function nchwcProbeModel(): Uint8Array {
  const ctx = new EmitContext();
  ctx.node('ReorderInput', ['x'], {}, ['y'], NCHWC_DOMAIN);
  return modelProto(graphProto(ctx, [valueInfo('x', 'float32', [1, 4, 1, 1])], [valueInfo('y', 'float32', [1, 'channels', 1, 1])], new Map(), 'volution'), ctx.domains, {});
}

/** A one-node float32 model of one of volution's kernels (tests call them directly). */
export function kernelModel(op: string, inputs: readonly (readonly [string, readonly number[]])[], outputs: readonly (readonly [string, readonly number[]])[]): Uint8Array {
  const ctx = new EmitContext();
  ctx.node(op, inputs.map(([n]) => n), {}, outputs.map(([n]) => n), VOLUTION_DOMAIN);
  const info = (vs: typeof inputs) => vs.map(([n, s]) => valueInfo(n, 'float32', s));
  return modelProto(graphProto(ctx, info(inputs), info(outputs), new Map(), 'volution'), ctx.domains, {});
}
