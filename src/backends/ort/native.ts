/**
 * A second binding of the ONNX Runtime library that onnxruntime-node ships,
 * through its C API and an FFI (koffi), for sessions that use volution's
 * fused kernels (`native/volution_kernels.c`, custom-op domain `ai.volution`):
 * onnxruntime-node's own binding has no call that registers a custom-op
 * library; the library itself does (OrtApi::RegisterCustomOpsLibrary).
 * `OrtSession.create` uses it when given a `kernelLibrary`.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import koffi from 'koffi';
import { RuntimeFailure } from '../../errors.js';
import { debug } from '../debug.js';
import { type ArrayFor, type DType, NDArray, TYPED_ARRAY, numel } from '../../ir/ndarray.js';
import { ONNX_DTYPE_CODE } from '../onnx/dtypes.js';
import { DEFAULT_THREADS, type OrtOptions } from './session.js';

/** Positions in ONNX Runtime's OrtApi table (onnxruntime_c_api.h); the table is append-only. */
const API = {
  GetErrorMessage: 2,
  CreateEnv: 3,
  CreateSessionFromArray: 8,
  Run: 9,
  CreateSessionOptions: 10,
  EnableProfiling: 14,
  EnableMemPattern: 16,
  DisableMemPattern: 17,
  SetSessionGraphOptimizationLevel: 23,
  SetIntraOpNumThreads: 24,
  SetInterOpNumThreads: 25,
  RegisterCustomOpsLibrary: 29,
  SessionGetInputCount: 30,
  SessionGetOutputCount: 31,
  SessionGetInputName: 36,
  SessionGetOutputTypeInfo: 34,
  SessionGetOutputName: 37,
  CreateTensorWithDataAsOrtValue: 49,
  GetTensorMutableData: 51,
  CastTypeInfoToTensorInfo: 55,
  GetTensorElementType: 60,
  GetDimensionsCount: 61,
  GetDimensions: 62,
  GetTensorTypeAndShape: 65,
  CreateCpuMemoryInfo: 69,
  AllocatorFree: 76,
  GetAllocatorWithDefaultOptions: 78,
  ReleaseStatus: 93,
  ReleaseSession: 95,
  ReleaseValue: 96,
  ReleaseTypeInfo: 98,
  ReleaseTensorTypeAndShapeInfo: 99,
  ReleaseSessionOptions: 100,
  AddSessionConfigEntry: 130,
} as const;

const LEVEL = { disabled: 0, basic: 1, extended: 2, all: 99 } as const;

type Fn = (...args: unknown[]) => unknown;

/** The C API of onnxruntime-node's own library, loaded once. */
class OrtC {
  private readonly fns = new Map<number, Fn>();
  readonly env: unknown;
  readonly cpu: unknown;
  readonly allocator: unknown;

  private constructor(private readonly table: unknown[]) {
    const out: unknown[] = [null];
    this.check(this.fn(API.CreateEnv, 'void* f(int, const char*, _Out_ void**)')(3, 'volution', out));
    this.env = out[0];
    this.check(this.fn(API.CreateCpuMemoryInfo, 'void* f(int, int, _Out_ void**)')(1, 0, out));
    this.cpu = out[0];
    this.check(this.fn(API.GetAllocatorWithDefaultOptions, 'void* f(_Out_ void**)')(out));
    this.allocator = out[0];
  }

  static load(): OrtC {
    const pkg = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    const path = join(pkg, 'bin', 'napi-v6', process.platform, process.arch, process.platform === 'linux' ? 'libonnxruntime.so.1' : process.platform === 'darwin' ? 'libonnxruntime.dylib' : 'onnxruntime.dll');
    const lib = koffi.load(path);
    const base = koffi.decode(lib.func('void* OrtGetApiBase()')(), koffi.array('void*', 2)) as unknown[];
    const api = koffi.call(base[0], koffi.proto('void* GetApi(uint32_t)'), 18);
    if (!api) throw new RuntimeFailure(`ONNX Runtime at ${path} is older than API version 18`);
    // The entries this binding calls: the table is longer in every supported release.
    return new OrtC(koffi.decode(api, koffi.array('void*', Math.max(...Object.values(API)) + 1)) as unknown[]);
  }

  fn(index: number, signature: string): Fn {
    let f = this.fns.get(index);
    if (!f) {
      // koffi names every prototype; one per table entry.
      const proto = koffi.proto(signature.replace(' f(', ` ort_api_${index}(`));
      f = (...args: unknown[]) => koffi.call(this.table[index], proto, ...args);
      this.fns.set(index, f);
    }
    return f;
  }

  /** Throws the message of a non-null OrtStatus (and frees it), after `what` when given. */
  check(status: unknown, what?: string): void {
    if (!status) return;
    const message = this.fn(API.GetErrorMessage, 'const char* f(void*)')(status) as string;
    this.fn(API.ReleaseStatus, 'void f(void*)')(status);
    throw new RuntimeFailure(what ? `${what}: ${message}` : message);
  }

  name(session: unknown, index: number, input: boolean): string {
    const out: unknown[] = [null];
    this.check(this.fn(input ? API.SessionGetInputName : API.SessionGetOutputName, 'void* f(void*, size_t, void*, _Out_ void**)')(session, index, this.allocator, out));
    const name = koffi.decode(out[0], 'char', -1) as string;
    this.check(this.fn(API.AllocatorFree, 'void* f(void*, void*)')(this.allocator, out[0]));
    return name;
  }
}

let ortC: OrtC | undefined;

const ELEMENT = new Map(Object.entries(ONNX_DTYPE_CODE).map(([dtype, code]) => [code, dtype as DType]));

/** An output's type where the model fixes every dimension. */
interface StaticOutput {
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/** An ONNX Runtime session created through the C API, with volution's kernel library registered. */
export class NativeOrtSession {
  private constructor(
    private readonly c: OrtC,
    private session: unknown,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    /** Per output: its type where static (ONNX Runtime then writes straight into a JavaScript array), else undefined. */
    private readonly staticOutputs: readonly (StaticOutput | undefined)[],
  ) {}

  static create(model: Uint8Array, library: string, opts: OrtOptions = {}): NativeOrtSession {
    const c = (ortC ??= OrtC.load());
    const out: unknown[] = [null];
    c.check(c.fn(API.CreateSessionOptions, 'void* f(_Out_ void**)')(out));
    const options = out[0];
    try {
      c.check(c.fn(API.SetIntraOpNumThreads, 'void* f(void*, int)')(options, opts.threads ?? DEFAULT_THREADS));
      c.check(c.fn(API.SetInterOpNumThreads, 'void* f(void*, int)')(options, 1));
      c.check(c.fn(API.SetSessionGraphOptimizationLevel, 'void* f(void*, int)')(options, LEVEL[opts.optimization ?? 'all']));
      c.check(c.fn(opts.memoryPattern === false ? API.DisableMemPattern : API.EnableMemPattern, 'void* f(void*)')(options));
      // VOLUTION_PROFILE=<prefix>: ONNX Runtime writes a per-node timing profile (JSON), as for onnxruntime-node's sessions
      if (process.env.VOLUTION_PROFILE) c.check(c.fn(API.EnableProfiling, 'void* f(void*, const char*)')(options, process.env.VOLUTION_PROFILE));
      if (opts.spinWait === false) c.check(c.fn(API.AddSessionConfigEntry, 'void* f(void*, const char*, const char*)')(options, 'session.intra_op.allow_spinning', '0'));
      c.check(c.fn(API.RegisterCustomOpsLibrary, 'void* f(void*, const char*, _Out_ void**)')(options, library, out), 'ONNX Runtime could not load the kernel library');
      c.check(c.fn(API.CreateSessionFromArray, 'void* f(void*, const void*, size_t, void*, _Out_ void**)')(c.env, model, model.length, options, out), 'ONNX Runtime could not load the model');
    } finally {
      c.fn(API.ReleaseSessionOptions, 'void f(void*)')(options);
    }
    const session = out[0];
    const count = (index: number) => {
      const n = [0];
      c.check(c.fn(index, 'void* f(void*, _Out_ size_t*)')(session, n));
      return Number(n[0]);
    };
    const inputs = Array.from({ length: count(API.SessionGetInputCount) }, (_, i) => c.name(session, i, true));
    const outputs = Array.from({ length: count(API.SessionGetOutputCount) }, (_, i) => c.name(session, i, false));
    return new NativeOrtSession(c, session, inputs, outputs, outputs.map((_, i) => staticOutput(c, session, i)));
  }

  /**
   * Runs with feeds by input name; returns outputs by name. ONNX Runtime writes
   * an output of static shape straight into the JavaScript array returned;
   * others are copied out of its memory.
   */
  run(feeds: Readonly<Record<string, NDArray>>): Record<string, NDArray> {
    const { c } = this;
    const values: unknown[] = [];
    const outputs: unknown[] = this.outputNames.map(() => null);
    const bound = this.staticOutputs.map((o) => o && uninitialized(o.dtype, o.shape));
    try {
      for (const name of this.inputNames) values.push(this.wrap(feeds[name]!)); // OrtSession.run checked every input is there
      bound.forEach((a, i) => a && (outputs[i] = this.wrap(a)));
      const t0 = performance.now();
      c.check(c.fn(API.Run, 'void* f(void*, void*, const char**, void**, size_t, const char**, size_t, _Inout_ void**)')(this.session, null, this.inputNames, values, values.length, this.outputNames, outputs.length, outputs));
      const t1 = performance.now();
      const res: Record<string, NDArray> = {};
      this.outputNames.forEach((name, i) => (res[name] = bound[i] ?? this.read(outputs[i])));
      debug(2, `ort (C API): run ${(t1 - t0).toFixed(1)} ms, outputs read in ${(performance.now() - t1).toFixed(1)} ms`);
      return res;
    } finally {
      for (const v of [...values, ...outputs]) if (v) c.fn(API.ReleaseValue, 'void f(void*)')(v);
    }
  }

  /** An OrtValue over `a`'s own memory (no copy; valid while `a` is). */
  private wrap(a: NDArray): unknown {
    const out: unknown[] = [null];
    const shape = BigInt64Array.from(a.shape.map(BigInt));
    this.c.check(this.c.fn(API.CreateTensorWithDataAsOrtValue, 'void* f(void*, void*, size_t, const int64_t*, size_t, int, _Out_ void**)')(this.c.cpu, a.data, a.data.byteLength, shape, a.shape.length, ONNX_DTYPE_CODE[a.dtype], out));
    return out[0];
  }

  private read(value: unknown): NDArray {
    const { c } = this;
    const out: unknown[] = [null];
    c.check(c.fn(API.GetTensorTypeAndShape, 'void* f(void*, _Out_ void**)')(value, out));
    const info = out[0];
    try {
      const { code, dtype, shape } = tensorType(c, info);
      if (!dtype) throw new RuntimeFailure(`ONNX Runtime returned a tensor of element type ${code}, which volution does not read`);
      c.check(c.fn(API.GetTensorMutableData, 'void* f(void*, _Out_ void**)')(value, out));
      const result = uninitialized(dtype, shape);
      const bytes = result.data.byteLength;
      if (bytes) new Uint8Array(result.data.buffer).set(new Uint8Array(koffi.view(out[0], bytes)));
      return result;
    } finally {
      c.fn(API.ReleaseTensorTypeAndShapeInfo, 'void f(void*)')(info);
    }
  }

  release(): void {
    if (this.session) this.c.fn(API.ReleaseSession, 'void f(void*)')(this.session);
    this.session = null;
  }
}

/** An OrtTensorTypeAndShapeInfo's element type code, dtype (undefined for one volution does not read) and shape (−1 for a dynamic dimension). */
function tensorType(c: OrtC, info: unknown): { code: number; dtype: DType | undefined; shape: number[] } {
  const n = [0];
  const type = [0];
  c.check(c.fn(API.GetTensorElementType, 'void* f(void*, _Out_ int*)')(info, type));
  c.check(c.fn(API.GetDimensionsCount, 'void* f(void*, _Out_ size_t*)')(info, n));
  const dims = new BigInt64Array(Number(n[0]));
  c.check(c.fn(API.GetDimensions, 'void* f(void*, _Out_ int64_t*, size_t)')(info, dims, dims.length));
  const code = Number(type[0]);
  return { code, dtype: ELEMENT.get(code), shape: [...dims].map(Number) };
}

/**
 * A new array for ONNX Runtime to fill whole, its memory left uninitialised
 * (Node's allocUnsafeSlow): zeroing it first cost 0.4–0.9 ms for 4.8 MB here,
 * as much as a GELU over it.
 */
function uninitialized<D extends DType>(dtype: D, shape: readonly number[]): NDArray<D> {
  const size = numel(shape);
  const type = TYPED_ARRAY[dtype];
  return new NDArray(dtype, shape, new type(Buffer.allocUnsafeSlow(size * type.BYTES_PER_ELEMENT).buffer, 0, size) as ArrayFor[D]);
}

/** Output `index`'s dtype and shape where the model fixes every dimension (and it holds data); else undefined. */
function staticOutput(c: OrtC, session: unknown, index: number): StaticOutput | undefined {
  const out: unknown[] = [null];
  c.check(c.fn(API.SessionGetOutputTypeInfo, 'void* f(void*, size_t, _Out_ void**)')(session, index, out));
  const typeInfo = out[0];
  try {
    c.check(c.fn(API.CastTypeInfoToTensorInfo, 'void* f(void*, _Out_ void**)')(typeInfo, out));
    if (!out[0]) return undefined; // not a tensor; the info is owned by typeInfo
    const { dtype, shape } = tensorType(c, out[0]);
    return dtype && shape.every((d) => d > 0) ? { dtype, shape } : undefined;
  } finally {
    c.fn(API.ReleaseTypeInfo, 'void f(void*)')(typeInfo);
  }
}
