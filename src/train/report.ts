/**
 * The run's HTML report: one self-contained file (inline SVG, no scripts,
 * no external assets) with the loss and accuracy curves, the per-epoch
 * table, the data-vs-step timing and the run's full configuration.
 * Rewritten after every epoch, so it is readable while the run goes.
 */
import type { MetricsRecord } from './metrics.js';

export interface ReportInput {
  title: string;
  /** One line under the title: completed / interrupted / diverged, and the headline number. */
  status: string;
  /** Key facts (model, parameters, data, backend, result), shown as a table. */
  facts: readonly (readonly [string, string])[];
  /** The run's configuration, shown in full. */
  config: Record<string, unknown>;
  records: readonly MetricsRecord[];
  stepsPerEpoch: number;
}

interface Series {
  name: string;
  color: string;
  points: readonly (readonly [number, number])[];
  /** Draw thin and faint (raw per-step values under their smoothed line). */
  faint?: boolean;
  dots?: boolean;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round tick steps (1, 2, 5 × 10^k) covering [lo, hi] with about `n` ticks. */
function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

/** A line chart as an SVG element. */
export function lineChart(opts: { title: string; xLabel: string; yLabel: string; series: readonly Series[]; yMin?: number; yMax?: number }): string {
  const W = 560;
  const H = 300;
  const m = { l: 56, r: 16, t: 28, b: 64 };
  const all = opts.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (all.length === 0) return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"><text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">${esc(opts.title)}: no data yet</text></svg>`;
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const x0 = Math.min(0, ...xs);
  const x1 = Math.max(...xs, x0 + 1e-9);
  let y0 = opts.yMin ?? Math.min(...ys);
  let y1 = opts.yMax ?? Math.max(...ys);
  if (y1 - y0 < 1e-9) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<text x="${m.l}" y="16" font-weight="600">${esc(opts.title)}</text>`);
  for (const t of ticks(y0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end" fill="#555">${fmt(t)}</text>`);
  }
  for (const t of ticks(x0, x1, 8)) {
    parts.push(`<line x1="${px(t).toFixed(1)}" x2="${px(t).toFixed(1)}" y1="${H - m.b}" y2="${H - m.b + 4}" stroke="#555"/>`);
    parts.push(`<text x="${px(t).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle" fill="#555">${fmt(t)}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#555"/><line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#555"/>`);
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - m.b + 32}" text-anchor="middle" fill="#333">${esc(opts.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" fill="#333">${esc(opts.yLabel)}</text>`);
  let lx = m.l;
  for (const s of opts.series) {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length) {
      const d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${px(x).toFixed(1)} ${py(Math.min(y1, Math.max(y0, y))).toFixed(1)}`).join('');
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="${s.faint ? 1 : 2}" stroke-opacity="${s.faint ? 0.3 : 1}"/>`);
      if (s.dots) for (const [x, y] of pts) parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    if (!s.faint) {
      parts.push(`<rect x="${lx}" y="${H - 18}" width="12" height="4" fill="${s.color}"/><text x="${lx + 16}" y="${H - 12}" fill="#333">${esc(s.name)}</text>`);
      lx += 24 + s.name.length * 7;
    }
  }
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="${esc(opts.title)}">${parts.join('')}</svg>`;
}

/** Exponential smoothing of a noisy curve (TensorBoard's, debiased). */
function smooth(points: readonly (readonly [number, number])[], weight: number): [number, number][] {
  let acc = 0;
  let n = 0;
  return points.map(([x, y]) => {
    acc = weight * acc + (1 - weight) * y;
    n++;
    return [x, acc / (1 - weight ** n)];
  });
}

export function renderReport(r: ReportInput): string {
  const steps = r.records.filter((x): x is Extract<MetricsRecord, { kind: 'step' }> => x.kind === 'step');
  const epochs = r.records.filter((x): x is Extract<MetricsRecord, { kind: 'epoch' }> => x.kind === 'epoch');
  const events = r.records.filter((x): x is Extract<MetricsRecord, { kind: 'event' }> => x.kind === 'event');
  const spe = Math.max(1, r.stepsPerEpoch);
  const stepLoss = steps.map((s) => [s.step / spe, s.loss] as const);
  const hasEma = epochs.some((e) => e.ema_val_top1 !== undefined);
  const lossChart = lineChart({
    title: 'Loss',
    xLabel: 'epoch',
    yLabel: 'cross-entropy',
    yMin: 0,
    series: [
      { name: 'train (per step)', color: '#1f77b4', points: stepLoss, faint: true },
      { name: 'train (smoothed)', color: '#1f77b4', points: smooth(stepLoss, 0.9) },
      { name: 'val', color: '#d62728', points: epochs.map((e) => [e.epoch, e.val_loss]), dots: true },
      ...(hasEma ? [{ name: 'val (EMA)', color: '#9467bd', points: epochs.filter((e) => e.ema_val_loss !== undefined).map((e) => [e.epoch, e.ema_val_loss!] as const), dots: true }] : []),
    ],
  });
  const accChart = lineChart({
    title: 'Accuracy',
    xLabel: 'epoch',
    yLabel: '%',
    yMin: 0,
    yMax: 100,
    series: [
      { name: 'train top-1', color: '#1f77b4', points: epochs.map((e) => [e.epoch, e.train_top1 * 100]), dots: true },
      { name: 'val top-1', color: '#d62728', points: epochs.map((e) => [e.epoch, e.val_top1 * 100]), dots: true },
      { name: 'val top-5', color: '#ff7f0e', points: epochs.map((e) => [e.epoch, e.val_top5 * 100]), dots: true },
      ...(hasEma ? [{ name: 'val top-1 (EMA)', color: '#9467bd', points: epochs.filter((e) => e.ema_val_top1 !== undefined).map((e) => [e.epoch, e.ema_val_top1! * 100] as const), dots: true }] : []),
    ],
  });
  const lrChart = lineChart({ title: 'Learning rate', xLabel: 'epoch', yLabel: 'lr', yMin: 0, series: [{ name: 'lr', color: '#2ca02c', points: steps.map((s) => [s.step / spe, s.lr]) }] });
  const pct = (v: number | undefined) => (v === undefined ? '' : (v * 100).toFixed(2));
  const rows = epochs
    .map(
      (e) =>
        `<tr><td>${e.epoch}</td><td>${e.step}</td><td>${fmt(e.lr)}</td><td>${e.train_loss.toFixed(4)}</td><td>${pct(e.train_top1)}</td><td>${e.val_loss.toFixed(4)}</td><td>${pct(e.val_top1)}</td><td>${pct(e.val_top5)}</td>${hasEma ? `<td>${pct(e.ema_val_top1)}</td>` : ''}<td>${e.images_per_s.toFixed(1)}</td><td>${e.data_ms.toFixed(1)} / ${e.data_wait_ms.toFixed(1)}</td><td>${e.step_ms.toFixed(0)}</td><td>${e.epoch_s.toFixed(1)}</td></tr>`,
    )
    .join('\n');
  const facts = r.facts.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('\n');
  const eventList = events.length ? `<h2>Events</h2><ul>${events.map((e) => `<li>step ${e.step}: ${esc(e.event)}: ${esc(e.message)}</li>`).join('')}</ul>` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(r.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1180px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.status { color: #444; margin-top: 0; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 0.25rem 0.6rem; text-align: right; }
table.facts th, table.facts td { text-align: left; }
thead th { background: #f5f5f5; }
pre { background: #f7f7f7; padding: 1rem; overflow: auto; font-size: 0.85rem; }
</style>
</head>
<body>
<h1>${esc(r.title)}</h1>
<p class="status">${esc(r.status)}</p>
<table class="facts">
${facts}
</table>
<h2>Curves</h2>
<div class="charts">
${lossChart}
${accChart}
${lrChart}
</div>
<h2>Epochs</h2>
<table>
<thead><tr><th>epoch</th><th>step</th><th>lr</th><th>train loss</th><th>train top-1 %</th><th>val loss</th><th>val top-1 %</th><th>val top-5 %</th>${hasEma ? '<th>EMA top-1 %</th>' : ''}<th>images/s</th><th>data ms (make / wait)</th><th>step ms</th><th>epoch s</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<p>Train loss and accuracy are running averages over the epoch's batches in train mode (with augmentation, dropout and drop-path; with mixup, against the unmixed labels). Validation is in eval mode on the held-out split. "data ms": time to make a batch in the data worker, and the time the training loop waited for it.</p>
${eventList}
<h2>Configuration</h2>
<pre>${esc(JSON.stringify(r.config, null, 2))}</pre>
</body>
</html>
`;
}
