import { ShapeError, VolutionError, fmtShape } from '../errors.js';
import type { DType, NDArray } from './ndarray.js';
import { OPS, checkOpArity, type OpName, type AttrsOf } from './ops.js';

/** Static type of a value: every dimension is known at trace time. */
export interface ValueType {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export type ValueRole = 'input' | 'param' | 'intermediate';

/** An SSA value: a graph input or one output of a node. */
export class Value implements ValueType {
  readonly id: number;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly role: ValueRole;
  /** The node that computes it (undefined for graph inputs). */
  readonly producer: Node | undefined;
  /** Human-readable name: input names, parameter state-dict keys. */
  readonly name: string;

  constructor(id: number, type: ValueType, role: ValueRole, name: string, producer?: Node) {
    this.id = id;
    this.dtype = type.dtype;
    this.shape = type.shape;
    this.role = role;
    this.name = name;
    this.producer = producer;
  }

  toString(): string {
    return `%${this.id}:${this.dtype}${fmtShape(this.shape)}`;
  }
}

export type AttrValue = number | boolean | string | readonly number[] | NDArray;
export type Attrs = Readonly<Record<string, AttrValue>>;

export class Node {
  readonly id: number;
  readonly op: OpName;
  readonly inputs: readonly Value[];
  readonly attrs: Attrs;
  /** Module path that emitted the node (e.g. `blocks.0.attn`), for errors and ONNX node names. */
  readonly scope: string;
  outputs: readonly Value[] = [];

  constructor(id: number, op: OpName, inputs: readonly Value[], attrs: Attrs, scope: string) {
    this.id = id;
    this.op = op;
    this.inputs = inputs;
    this.attrs = attrs;
    this.scope = scope;
  }
}

/** Wraps an op's own error with the node's context: op, input shapes and module path. */
function withContext(op: string, inputs: readonly ValueType[], scope: string, err: unknown): Error {
  if (!(err instanceof VolutionError)) return err as Error;
  const where = scope ? ` in module '${scope}'` : '';
  const shapes = inputs.map((v) => `${v.dtype}${fmtShape(v.shape)}`).join(', ');
  const msg = `${op}${where}: ${err.message} (inputs: ${shapes || 'none'})`;
  const wrapped = new (err.constructor as new (m: string) => VolutionError)(msg);
  return wrapped;
}

/**
 * A static dataflow graph. Nodes are kept in topological order: a node is
 * only appended once its inputs exist.
 */
export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  outputs: Value[] = [];
  private nextId = 0;

  addInput(type: ValueType, name: string, role: 'input' | 'param' = 'input'): Value {
    for (const d of type.shape) {
      if (!Number.isInteger(d) || d < 0) throw new ShapeError(`input '${name}': invalid shape ${fmtShape(type.shape)}`);
    }
    const v = new Value(this.nextId++, { dtype: type.dtype, shape: [...type.shape] }, role, name);
    this.inputs.push(v);
    return v;
  }

  /** Appends a node after validating attributes and inferring output types. */
  addNode<K extends OpName>(op: K, inputs: readonly Value[], attrs: AttrsOf<K>, scope = ''): Value[] {
    const spec = OPS[op];
    let types: ValueType[];
    try {
      checkOpArity(op, inputs.length);
      types = spec.infer(inputs, attrs as never);
    } catch (err) {
      throw withContext(op, inputs, scope, err);
    }
    const node = new Node(this.nextId++, op, inputs, attrs as Attrs, scope);
    node.outputs = types.map((t) => new Value(this.nextId++, t, 'intermediate', '', node));
    this.nodes.push(node);
    return [...node.outputs];
  }

  /** Nodes that the outputs depend on, in topological order (dead code dropped). */
  liveNodes(outputs: readonly Value[] = this.outputs): Node[] {
    const live = new Set<Node>();
    const stack: Value[] = [...outputs];
    while (stack.length) {
      const v = stack.pop()!;
      const p = v.producer;
      if (p && !live.has(p)) {
        live.add(p);
        stack.push(...p.inputs);
      }
    }
    return this.nodes.filter((n) => live.has(n));
  }

  /** One line per node, for `VOLUTION_DEBUG` and error reports. */
  toString(): string {
    const lines = [`graph(${this.inputs.map(String).join(', ')})`];
    for (const n of this.nodes) {
      const attrs = Object.entries(n.attrs)
        .map(([k, v]) => `${k}=${typeof v === 'object' && !Array.isArray(v) ? '<tensor>' : JSON.stringify(v)}`)
        .join(' ');
      lines.push(`  ${n.outputs.map(String).join(', ')} = ${n.op}(${n.inputs.map((v) => `%${v.id}`).join(', ')}) ${attrs}${n.scope ? `  # ${n.scope}` : ''}`);
    }
    lines.push(`  return ${this.outputs.map((v) => `%${v.id}`).join(', ')}`);
    return lines.join('\n');
  }
}
