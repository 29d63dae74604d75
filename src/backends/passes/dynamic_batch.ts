/**
 * Dynamic-batch export. Graphs are traced with static shapes, so the batch
 * size is baked into reshape and expand targets. Tracing the same function
 * at two batch sizes and diffing the graphs finds those targets: a reshape
 * gets −1 at its single batch-proportional dimension, an expand gets 1 where
 * its input already carries the batch (ONNX Expand broadcasts both ways) or
 * the runtime batch where it broadcasts a size-1 dimension to the batch (a
 * class token). Anything else that depends on the batch is refused.
 */
import { ConfigError, fmtShape } from '../../errors.js';
import type { AttrValue, Graph, Node, Value } from '../../ir/graph.js';
import { NDArray } from '../../ir/ndarray.js';
import type { ShapeTarget } from '../onnx/model.js';

function describe(node: Node): string {
  return `${node.op} node${node.scope ? ` in module '${node.scope}'` : ''}`;
}

function refuse(node: Node, why: string): never {
  throw new ConfigError(`dynamic batch: the ${describe(node)} ${why}; export with a fixed batch (--batch N) instead`);
}

function sameAttr(a: AttrValue | undefined, b: AttrValue | undefined): boolean {
  if (a instanceof NDArray || b instanceof NDArray) {
    if (!(a instanceof NDArray && b instanceof NDArray) || a.dtype !== b.dtype || a.shape.join() !== b.shape.join()) return false;
    for (let i = 0; i < a.size; i++) if (a.data[i] !== b.data[i]) return false;
    return true;
  }
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Dimensions where two same-rank shapes differ. */
function differing(a: readonly number[], b: readonly number[]): number[] {
  return a.flatMap((d, i) => (d !== b[i] ? [i] : []));
}

/**
 * Compares the graphs of one function traced at batch sizes `batchA` and
 * `batchB` (use two sizes above 1: at batch 1 some ops vanish, such as an
 * expand of a class token) and returns, for the nodes of `b`, the targets to
 * emit for a batch-independent ONNX graph (see `EmitOptions.shapeTargets`).
 */
export function dynamicBatchTargets(a: Graph, b: Graph, batchA: number, batchB: number): Map<Node, ShapeTarget> {
  const nodesA = a.liveNodes();
  const nodesB = b.liveNodes();
  const corresponding = new Map<Value, Value>(a.inputs.map((v, i) => [v, b.inputs[i]!]));
  const targets = new Map<Node, ShapeTarget>();
  const proportional = (da: number, db: number) => da * batchB === db * batchA;
  for (let i = 0; i < Math.max(nodesA.length, nodesB.length); i++) {
    const na = nodesA[i];
    const nb = nodesB[i];
    if (!na || !nb || na.op !== nb.op || na.inputs.length !== nb.inputs.length || na.inputs.some((v, j) => corresponding.get(v) !== nb.inputs[j])) {
      const node = nb ?? na!;
      refuse(node, `is traced differently at batch ${batchA} and ${batchB} (the model's code branches on the batch size)`);
    }
    na.outputs.forEach((v, j) => corresponding.set(v, nb.outputs[j]!));
    const changed = Object.keys(nb.attrs).filter((k) => !sameAttr(na.attrs[k], nb.attrs[k]));
    if (changed.length === 0) continue;
    if (nb.op === 'reshape') {
      const sa = na.attrs.shape as readonly number[];
      const sb = nb.attrs.shape as readonly number[];
      const dims = sa.length === sb.length ? differing(sa, sb) : [];
      if (dims.length !== 1 || !proportional(sa[dims[0]!]!, sb[dims[0]!]!)) {
        refuse(nb, `reshapes to ${fmtShape(sa)} at batch ${batchA} but ${fmtShape(sb)} at batch ${batchB}, not one dimension proportional to the batch`);
      }
      targets.set(nb, sb.map((d, k) => (k === dims[0] ? -1 : d)));
    } else if (nb.op === 'expand') {
      const sa = na.attrs.shape as readonly number[];
      const sb = nb.attrs.shape as readonly number[];
      const inA = na.inputs[0]!.shape;
      const inB = nb.inputs[0]!.shape;
      const offset = sb.length - inB.length;
      const target: (number | 'batch')[] = [...sb];
      for (const k of differing(sa, sb)) {
        const carried = k >= offset && inA[k - offset] !== inB[k - offset];
        if (carried) target[k] = 1;
        else if (sa[k] === batchA && sb[k] === batchB) target[k] = 'batch';
        else refuse(nb, `expands to ${fmtShape(sa)} at batch ${batchA} but ${fmtShape(sb)} at batch ${batchB}`);
      }
      targets.set(nb, target);
    } else {
      const names = changed.map((k) => `'${k}'`).join(', ');
      refuse(nb, changed.length > 1 ? `has attributes ${names} that depend on the batch size` : `has attribute ${names} that depends on the batch size`);
    }
  }
  return targets;
}
