// Writes one benchmark run to bench/results/: the raw figures as JSON, the summary as a Markdown
// table (scenario, gatehouse, peer, ratio, goal), and an SVG bar chart of the ratios against the goals.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** One line of the summary: gatehouse against one peer on one figure. */
export interface Comparison {
  scenario: string;
  unit: string;
  gatehouse: number;
  peer: string;
  peerValue: number;
  /** True when more is better (req/s, MB/s); false for latency and memory. */
  higherIsBetter: boolean;
  /** The goal as a "goodness" ratio (>= 1 means gatehouse at least as good as the peer), if any. */
  goal?: number;
  goalText?: string;
  note?: string;
}

export interface Measurement {
  scenario: string;
  server: string;
  rounds: Array<Record<string, number | string | undefined>>;
  median: Record<string, number | undefined>;
}

export interface BenchRun {
  date: string;
  machine: { cores: number; cpu: string; memoryGiB: number; loadAverage: number[]; node: string };
  options: Record<string, unknown>;
  skipped: string[];
  measurements: Measurement[];
  comparisons: Comparison[];
}

/** gatehouse / peer where more is better, peer / gatehouse where less is: >= 1 means gatehouse is as good or better. */
export const goodness = (c: Comparison): number => (c.higherIsBetter ? c.gatehouse / c.peerValue : c.peerValue / c.gatehouse);

/** The plain ratio gatehouse / peer, as people read it (0.3x the req/s, 3.8x the latency). */
export const ratio = (c: Comparison): number => c.gatehouse / c.peerValue;

const fmt = (v: number, unit: string) => (Number.isNaN(v) ? '-' : `${v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(v >= 10 ? 1 : 2)} ${unit}`);

export function markdown(run: BenchRun): string {
  const lines = [
    `gatehouse benchmark, ${run.date}; ${run.machine.cores} cores (${run.machine.cpu}), ${run.machine.memoryGiB} GiB, load average at start ${run.machine.loadAverage.map((l) => l.toFixed(1)).join(' ')}, Node ${run.machine.node}.`,
    'Medians of the rounds; ratio = gatehouse / peer; "meets goal" compares like with like (more is better for throughput, less for latency and memory).',
    '',
    '| scenario | gatehouse | peer in the same run | ratio | goal | meets goal; notes |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const c of run.comparisons) {
    const meets = c.goal === undefined ? '' : goodness(c) >= c.goal ? 'yes' : 'no';
    lines.push(`| ${c.scenario} | ${fmt(c.gatehouse, c.unit)} | ${c.peer} ${fmt(c.peerValue, c.unit)} | ${Number.isFinite(ratio(c)) ? ratio(c).toFixed(2) : '-'} | ${c.goalText ?? ''} | ${[meets, c.note].filter(Boolean).join('; ')} |`);
  }
  if (run.skipped.length > 0) lines.push('', ...run.skipped.map((s) => `- skipped: ${s}`));
  lines.push('', '| scenario | server | median figures |', '| --- | --- | --- |');
  for (const m of run.measurements) {
    const figures = Object.entries(m.median).filter(([, v]) => v !== undefined && !Number.isNaN(v)).map(([k, v]) => `${k} ${(v as number) >= 100 ? Math.round(v as number) : (v as number).toFixed(2)}`);
    lines.push(`| ${m.scenario} | ${m.server} | ${figures.join(', ')} |`);
  }
  return lines.join('\n') + '\n';
}

/** Horizontal bars of "goodness" (log scale, 1 = parity with the peer), with the goal marked. */
export function svgChart(run: BenchRun): string {
  const rows = run.comparisons.filter((c) => Number.isFinite(goodness(c)) && goodness(c) > 0);
  const width = 960;
  const left = 480;
  const barWidth = width - left - 40;
  const rowHeight = 26;
  const height = 60 + rows.length * rowHeight;
  const [lo, hi] = [0.05, 20];
  const x = (v: number) => left + (Math.log(Math.min(hi, Math.max(lo, v)) / lo) / Math.log(hi / lo)) * barWidth;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="18" font-size="13">gatehouse vs peers, ${esc(run.date.slice(0, 16))}Z: log scale, 1 = parity, right is better, | = goal (green met, red not, grey no goal)</text>`,
  ];
  for (const t of [0.1, 0.25, 0.5, 1, 2, 4, 10]) parts.push(`<line x1="${x(t)}" y1="30" x2="${x(t)}" y2="${height - 20}" stroke="${t === 1 ? '#000' : '#ddd'}"/><text x="${x(t) - 8}" y="${height - 6}">${t}</text>`);
  rows.forEach((c, i) => {
    const y = 36 + i * rowHeight;
    const g = goodness(c);
    const colour = c.goal === undefined ? '#999' : g >= c.goal ? '#4a9' : '#d65';
    parts.push(`<text x="10" y="${y + 14}" font-size="11">${esc(`${c.scenario} vs ${c.peer}`).slice(0, 72)}</text>`);
    parts.push(`<rect x="${x(lo)}" y="${y + 3}" width="${Math.max(1, x(g) - x(lo))}" height="16" fill="${colour}"/>`);
    parts.push(`<text x="${x(g) + 4}" y="${y + 15}">${g.toFixed(2)}</text>`);
    if (c.goal !== undefined) parts.push(`<line x1="${x(c.goal)}" y1="${y}" x2="${x(c.goal)}" y2="${y + 22}" stroke="#000" stroke-width="2"/>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/** Writes bench-<stamp>.{json,md,svg} and latest.{json,md,svg}; returns the Markdown path. */
export function writeResults(dir: string, run: BenchRun): string {
  mkdirSync(dir, { recursive: true });
  const stamp = run.date.replace(/[:]/g, '-').replace(/\..*$/, '');
  const files: Array<[string, string]> = [['json', JSON.stringify(run, null, 2) + '\n'], ['md', markdown(run)], ['svg', svgChart(run)]];
  for (const [ext, text] of files) {
    writeFileSync(join(dir, `bench-${stamp}.${ext}`), text);
    writeFileSync(join(dir, `latest.${ext}`), text);
  }
  return join(dir, `bench-${stamp}.md`);
}
