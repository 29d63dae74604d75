/**
 * volution's fused kernels (`native/volution_kernels.c`), compiled with the
 * machine's C compiler (`$CC`, else `cc`) on first use into a cache keyed by
 * the source and flags. In-process graphs use them where this returns a path;
 * elsewhere, or with `VOLUTION_KERNELS=0`, they keep ONNX Runtime's own ops.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Graph } from '../../ir/graph.js';
import { hasFusedKernel } from '../onnx/emit/types.js';
import { debug } from '../debug.js';

let built: { path: string | undefined } | undefined;

/** The kernel library where `graph` has an op it fuses and the library builds; else undefined (plain onnxruntime-node). */
export function kernelsFor(graph: Graph): string | undefined {
  return graph.nodes.some(hasFusedKernel) ? kernelLibrary() : undefined;
}

/** The compiled kernel library, built with the system's C compiler on first use; undefined where that fails. */
export function kernelLibrary(): string | undefined {
  if (process.env.VOLUTION_KERNELS === '0' || process.platform !== 'linux') return undefined;
  built ??= { path: build() };
  return built.path;
}

function build(): string | undefined {
  const source = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'native', 'volution_kernels.c');
  const flags = ['-O3', '-march=native', '-fno-math-errno', '-fPIC', '-shared'];
  try {
    const key = createHash('sha256').update(readFileSync(source)).update(flags.join(' ')).digest('hex').slice(0, 16);
    const dir = join(tmpdir(), 'volution-kernels');
    const lib = join(dir, `libvolution_kernels-${key}.so`);
    if (existsSync(lib)) return lib;
    mkdirSync(dir, { recursive: true });
    const partial = `${lib}.${process.pid}.tmp`;
    execFileSync(process.env.CC ?? 'cc', [...flags, '-o', partial, source], { stdio: 'pipe' });
    renameSync(partial, lib);
    return lib;
  } catch (err) {
    debug(1, `kernels: could not compile ${source} (${(err as Error).message.split('\n')[0]}); graphs use ONNX Runtime's own ops`);
    return undefined;
  }
}

