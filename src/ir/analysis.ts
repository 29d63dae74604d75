/**
 * Static cost analysis of a graph: multiply-accumulates, counted the way
 * fvcore and the papers count them: only convolutions and matrix products
 * (elementwise ops, norms and softmax are left out).
 */
import type { Graph, Node } from './graph.js';
import { numel } from './ndarray.js';

/** Multiply-accumulates of one node (0 for ops that are not counted). */
export function nodeMacs(node: Node): number {
  switch (node.op) {
    case 'conv2d': {
      // N·Cout·Ho·Wo output elements, each a dot product over (Cin/g)·kh·kw.
      const [, cinPerGroup, kh, kw] = node.inputs[1]!.shape as [number, number, number, number];
      return numel(node.outputs[0]!.shape) * cinPerGroup * kh * kw;
    }
    case 'conv_transpose2d': {
      // Every input element is scattered to (Cout/g)·kh·kw outputs.
      const [, coutPerGroup, kh, kw] = node.inputs[1]!.shape as [number, number, number, number];
      return numel(node.inputs[0]!.shape) * coutPerGroup * kh * kw;
    }
    case 'matmul': {
      // batch·m·n outputs, each a dot product of length k.
      const a = node.inputs[0]!.shape;
      return numel(node.outputs[0]!.shape) * a[a.length - 1]!;
    }
    default:
      return 0;
  }
}

/** Total multiply-accumulates of the nodes the outputs depend on. */
export function countMacs(graph: Graph): number {
  return graph.liveNodes().reduce((n, node) => n + nodeMacs(node), 0);
}

/**
 * The stage a module path belongs to: its first component, or its first two
 * when the first is a plain list of stages (`layers.0.blocks.1` → `layers.0`,
 * `blocks1.0.attn` → `blocks1`, `layer2.0.conv1` → `layer2`). '' is the
 * model's own code (outside any child module).
 */
export function stageOf(path: string): string {
  const [first = '', second] = path.split('.');
  return second !== undefined && /^\d+$/.test(second) && !/\d$/.test(first) ? `${first}.${second}` : first;
}

export interface ScopeCost {
  /** The group key (see `stageOf`); '' for nodes outside any module. */
  readonly scope: string;
  readonly macs: number;
  readonly nodes: number;
}

/** MACs and node counts grouped by `groupOf(node.scope)`, in order of first appearance. */
export function macsByScope(graph: Graph, groupOf: (scope: string) => string = stageOf): ScopeCost[] {
  const groups = new Map<string, { macs: number; nodes: number }>();
  for (const node of graph.liveNodes()) {
    const key = groupOf(node.scope);
    const g = groups.get(key) ?? { macs: 0, nodes: 0 };
    g.macs += nodeMacs(node);
    g.nodes += 1;
    groups.set(key, g);
  }
  return [...groups].map(([scope, g]) => ({ scope, ...g }));
}
