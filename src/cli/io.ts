/**
 * Where the command line writes: data to stdout, messages and progress to
 * stderr. Commands take a CliIO rather than touching `process`, so tests can
 * run them in-process and read what they printed.
 */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  /** Whether stderr is a terminal (progress is drawn in place only then). */
  readonly errIsTTY: boolean;
}

export const processIO: CliIO = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  get errIsTTY() {
    return process.stderr.isTTY === true;
  },
};

/** A one-line progress display on stderr, redrawn in place; silent when stderr is not a terminal. */
export class Progress {
  private shown = false;

  constructor(private readonly io: CliIO) {}

  update(text: string): void {
    if (!this.io.errIsTTY) return;
    this.io.err(`\r${text}\x1b[K`);
    this.shown = true;
  }

  /** Clears the line. */
  done(): void {
    if (this.shown) this.io.err('\r\x1b[K');
    this.shown = false;
  }
}

/** 21545256 → '21.55 M'. */
export function formatCount(n: number, unit = ''): string {
  for (const [scale, suffix] of [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']] as const) if (Math.abs(n) >= scale) return `${(n / scale).toFixed(2)} ${suffix}${unit}`;
  return `${n}${unit ? ` ${unit}` : ''}`;
}

/** 21545256 → '21,545,256'. */
export function formatInt(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

export type Align = 'left' | 'right';

/** A plain-text table: a header row, a rule, then the rows; columns padded to fit. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => ((align[i] ?? 'left') === 'right' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

/** Pretty JSON with a trailing newline. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
