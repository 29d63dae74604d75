/**
 * The reference interpreter: executes a Graph in float64, one straightforward
 * kernel per primitive. It is the oracle for tests (ONNX Runtime is checked
 * against it, gradients are checked on it by finite differences), not a
 * fast path.
 */
import { RuntimeFailure, ShapeError, fmtShape } from '../../errors.js';
import type { Graph, Value } from '../../ir/graph.js';
import { NDArray, allocate } from '../../ir/ndarray.js';
import { KERNELS } from './kernels.js';
import type { RefArray } from './types.js';

export function toRef(x: NDArray): RefArray {
  return { shape: x.shape, data: Float64Array.from(x.toFloat64()) };
}

export function fromRef(x: RefArray, dtype: NDArray['dtype']): NDArray {
  const out = allocate(dtype, x.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = x.data[i]!;
    if (dtype === 'int64') (out as BigInt64Array)[i] = BigInt(Math.trunc(v));
    else (out as Float64Array)[i] = v;
  }
  return new NDArray(dtype, x.shape, out);
}

/**
 * Runs `graph` on `feeds` (one array per graph input, in `graph.inputs`
 * order) and returns the values of `outputs` (default: the graph outputs).
 */
export function interpret(graph: Graph, feeds: ReadonlyMap<Value, NDArray | RefArray>, outputs: readonly Value[] = graph.outputs): RefArray[] {
  const env = new Map<Value, RefArray>();
  for (const v of graph.inputs) {
    const f = feeds.get(v);
    if (!f) throw new RuntimeFailure(`reference: no value fed for graph input '${v.name}' ${fmtShape(v.shape)}`);
    if (f.shape.join() !== v.shape.join()) throw new ShapeError(`reference: input '${v.name}' expects ${fmtShape(v.shape)}, got ${fmtShape(f.shape)}`);
    env.set(v, f instanceof NDArray ? toRef(f) : f);
  }
  for (const node of graph.liveNodes(outputs)) {
    const kernel = KERNELS[node.op];
    if (!kernel) throw new RuntimeFailure(`reference: op '${node.op}' has no kernel`);
    const ins = node.inputs.map((v) => env.get(v)!);
    const outs = (kernel as (i: readonly RefArray[], a: unknown, o: readonly Value[]) => RefArray[])(ins, node.attrs, node.outputs);
    node.outputs.forEach((v, i) => env.set(v, outs[i]!));
  }
  return outputs.map((v) => env.get(v)!);
}
