/**
 * `VOLUTION_DEBUG=1` prints graph sizes and session creation; `=2` adds
 * per-run timings; `=3` dumps traced graphs. Output goes to stderr.
 * `VOLUTION_PROFILE=<prefix>` makes ONNX Runtime write a per-node timing
 * profile (`<prefix>_<date>.json`, chrome://tracing format) for every session.
 */
const level = Number(process.env.VOLUTION_DEBUG ?? 0) || 0;

export function debugLevel(): number {
  return level;
}

export function debug(min: number, msg: string | (() => string)): void {
  if (level >= min) process.stderr.write(`[volution] ${typeof msg === 'string' ? msg : msg()}\n`);
}
