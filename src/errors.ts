/**
 * Typed errors. Every error volution throws on bad input is a `VolutionError`
 * whose message says what was wrong and what to do; `code` is stable for
 * programmatic handling.
 */
export class VolutionError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An op got tensors whose shapes or dtypes it cannot combine. Caught at trace time. */
export class ShapeError extends VolutionError {
  constructor(message: string) {
    super('E_SHAPE', message);
  }
}

/** An op attribute is missing, of the wrong kind or out of range. */
export class AttributeError extends VolutionError {
  constructor(message: string) {
    super('E_ATTRIBUTE', message);
  }
}

/** A NaN or Inf where a finite number is required (constants, losses). */
export class NonFiniteError extends VolutionError {
  /** @param step the train step that produced it, when one did */
  constructor(
    message: string,
    readonly step?: number,
  ) {
    super('E_NON_FINITE', message);
  }
}

/** Misuse of tracing: a tensor used outside its trace, no active trace, ... */
export class TraceError extends VolutionError {
  constructor(message: string) {
    super('E_TRACE', message);
  }
}

/** A runtime (ONNX Runtime, the reference interpreter) failed to execute a graph. */
export class RuntimeFailure extends VolutionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_RUNTIME', message, options);
  }
}

/** A file is corrupt, truncated, hostile or of an unsupported format. */
export class FormatError extends VolutionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_FORMAT', message, options);
  }
}

/** A checkpoint does not fit the model: missing, unexpected or mis-shaped keys. */
export class StateDictError extends VolutionError {
  constructor(message: string) {
    super('E_STATE_DICT', message);
  }
}

/** Unknown model name, bad config option. */
export class ConfigError extends VolutionError {
  constructor(message: string) {
    super('E_CONFIG', message);
  }
}

/** Formats a shape as `[2, 3, 4]` for error messages. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
