/**
 * Modules are plain objects: parameters, buffers and child modules are
 * ordinary fields, discovered in declaration order, so state-dict keys are
 * the dotted field paths, exactly as PyTorch builds them (a module's own
 * parameters, then its own buffers, then its children; arrays of modules
 * are numbered like nn.ModuleList). Nothing is global: train/eval is a field
 * set recursively by `train()` / `eval()`.
 */
import { StateDictError, fmtShape } from '../errors.js';
import type { NDArray } from '../ir/ndarray.js';
import { Parameter, type Tensor } from '../tensor/tensor.js';
import { activeTrace, isTracing } from '../tensor/trace.js';

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  mismatched: { key: string; expected: readonly number[]; got: readonly number[] }[];
}

export interface LoadOptions {
  /** Throw on any missing, unexpected or mis-shaped key (default true). */
  strict?: boolean;
  /** Keys to ignore when unexpected or missing (recomputable buffers, training-only heads). */
  ignore?: (key: string) => boolean;
}

type Child = Module | Parameter;

export abstract class Module {
  /** Train mode (BatchNorm batch statistics, dropout). Set with train()/eval(). */
  training = false;

  /** Fields that hold modules or parameters, in declaration order (arrays of modules expanded). */
  protected children(): [string, Child][] {
    const out: [string, Child][] = [];
    for (const [k, v] of Object.entries(this)) {
      if (v instanceof Module || v instanceof Parameter) out.push([k, v]);
      else if (Array.isArray(v) && v.length > 0 && v.every((m) => m instanceof Module)) {
        v.forEach((m: Module, i) => out.push([`${k}.${i}`, m]));
      }
    }
    return out;
  }

  /** Every (key, tensor) of the state dict, PyTorch order: own params, own buffers, then children. */
  namedTensors(prefix = ''): [string, Parameter][] {
    const own = this.children();
    const params: [string, Parameter][] = [];
    const buffers: [string, Parameter][] = [];
    const nested: [string, Parameter][] = [];
    for (const [k, v] of own) {
      if (v instanceof Parameter) (v.trainable ? params : buffers).push([prefix + k, v]);
      else nested.push(...v.namedTensors(`${prefix}${k}.`));
    }
    return [...params, ...buffers.filter(([, b]) => b.persistent), ...nested];
  }

  /** Trainable parameters with their keys. */
  namedParameters(): [string, Parameter][] {
    return this.namedTensors().filter(([, p]) => p.trainable);
  }

  /** Non-trainable tensors (running statistics, index tables). */
  namedBuffers(): [string, Parameter][] {
    return this.namedTensors().filter(([, p]) => !p.trainable);
  }

  /** Submodules with their dotted paths ('' is this module). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix.replace(/\.$/, ''), this]];
    for (const [k, v] of this.children()) if (v instanceof Module) out.push(...v.namedModules(`${prefix}${k}.`));
    return out;
  }

  /** Number of trainable parameter elements. */
  numParams(): number {
    return this.namedParameters().reduce((n, [, p]) => n + p.data.size, 0);
  }

  stateDict(): Map<string, NDArray> {
    return new Map(this.namedTensors().map(([k, p]) => [k, p.data]));
  }

  /**
   * Loads tensors by key. Strict by default: any missing, unexpected or
   * mis-shaped key throws a StateDictError listing all of them. Values are
   * converted to each tensor's dtype.
   */
  loadStateDict(sd: ReadonlyMap<string, NDArray>, opts: LoadOptions = {}): LoadReport {
    const ignore = opts.ignore ?? (() => false);
    const own = new Map(this.namedTensors());
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [] };
    for (const [k, p] of own) {
      const v = sd.get(k);
      if (!v) {
        if (!ignore(k)) report.missing.push(k);
      } else if (v.shape.join() !== p.data.shape.join()) report.mismatched.push({ key: k, expected: p.data.shape, got: v.shape });
    }
    for (const k of sd.keys()) if (!own.has(k) && !ignore(k)) report.unexpected.push(k);
    const bad = report.missing.length + report.unexpected.length + report.mismatched.length;
    if (bad && (opts.strict ?? true)) throw new StateDictError(describeReport(report, this.constructor.name));
    for (const [k, p] of own) {
      const v = sd.get(k);
      if (v && v.shape.join() === p.data.shape.join()) p.data = v.dtype === p.data.dtype ? v : v.astype(p.data.dtype);
    }
    return report;
  }

  /** Sets train mode on this module and every descendant. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Names every parameter by its state-dict key (used in graph input names and errors). */
  nameParameters(): this {
    for (const [k, p] of this.namedTensors()) p.name = k;
    for (const [path, m] of this.namedModules()) m.path = path;
    return this;
  }

  /** Dotted path of this module in the model it was named from (see nameParameters). */
  path = '';

  /**
   * Runs `forward` with this module's path on the trace's scope, so errors and
   * ONNX node names say which module emitted what.
   */
  call(...args: Tensor[]): Tensor {
    if (!isTracing() || !this.path) return this.forward(...args);
    const t = activeTrace();
    const out = t.withPath(this.path, () => this.forward(...args));
    t.recordCall(this.path, args.map((a) => a.value), out.value);
    return out;
  }

  abstract forward(...args: Tensor[]): Tensor;

  /** A tree of the module with parameter counts, like printing a PyTorch module. */
  toString(): string {
    const lines: string[] = [];
    const walk = (m: Module, name: string, depth: number) => {
      const n = m.numParams();
      lines.push(`${'  '.repeat(depth)}${name ? `(${name}): ` : ''}${m.constructor.name}${m.extraRepr() ? `(${m.extraRepr()})` : ''}  # ${n.toLocaleString('en-US')} params`);
      for (const [k, v] of m.children()) if (v instanceof Module) walk(v, k, depth + 1);
    };
    walk(this, '', 0);
    return lines.join('\n');
  }

  /** Shown in toString(); layers override it with their hyper-parameters. */
  extraRepr(): string {
    return '';
  }
}

function describeReport(r: LoadReport, model: string): string {
  const parts: string[] = [];
  const list = (xs: string[]) => xs.slice(0, 20).join(', ') + (xs.length > 20 ? `, … (${xs.length} in all)` : '');
  if (r.missing.length) parts.push(`missing keys: ${list(r.missing)}`);
  if (r.unexpected.length) parts.push(`unexpected keys: ${list(r.unexpected)}`);
  if (r.mismatched.length) parts.push(`shape mismatches: ${r.mismatched.slice(0, 20).map((m) => `${m.key} (model ${fmtShape(m.expected)}, checkpoint ${fmtShape(m.got)})`).join(', ')}`);
  return `the checkpoint does not fit ${model}: ${parts.join('; ')}. Check that the variant and config match the checkpoint (e.g. head_dim, num_classes), or load with strict: false to keep what fits.`;
}
