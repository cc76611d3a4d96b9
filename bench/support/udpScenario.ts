// The `udp` scenario of `npm run bench`: runs bench/udp-stream.ts (a detector-like stream of 1 KiB datagrams
// at increasing rates, direct, through socat and through gatehouse) and reports its figures as measurements.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchEnv } from './benchEnv.ts';
import type { Comparison, Measurement } from './report.ts';
import type { ScenarioOptions, ScenarioResult } from './scenarios.ts';

interface StreamRow {
  path: string;
  rate: number;
  sentPerSecond: number;
  deliveredPerSecond: number;
  loss: number;
  reordered: number;
}

export async function udpStream(env: BenchEnv, o: ScenarioOptions): Promise<ScenarioResult> {
  const file = join(env.dir, 'udp-stream.json');
  const rates = o.seconds <= 3 ? '5000,10000,20000' : '5000,10000,20000,40000,60000';
  const args = [join(import.meta.dirname, '..', 'udp-stream.ts'), '--seconds', String(o.seconds), '--rates', rates, '--json', file];
  await new Promise<void>((ok, fail) => spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] }).once('exit', (code) => (code === 0 ? ok() : fail(new Error(`udp-stream exited ${code}`)))));
  const data = JSON.parse(readFileSync(file, 'utf8')) as { rows: StreamRow[]; highest: Record<string, number> };
  const paths = Object.keys(data.highest);
  const measurements: Measurement[] = paths.map((path) => ({
    scenario: `UDP stream, 1 KiB datagrams, ${o.seconds} s per rate`,
    server: path,
    rounds: data.rows.filter((r) => r.path === path).map((r) => ({ rate: r.rate, sentPerSecond: r.sentPerSecond, deliveredPerSecond: r.deliveredPerSecond, lossPercent: r.loss * 100, reorderedPercent: r.reordered * 100 })),
    median: { highestRateUnder0p1PercentLoss: data.highest[path] },
  }));
  const comparisons: Comparison[] = [];
  const ours = data.highest['gatehouse CONNECT-UDP'];
  for (const peer of ['socat', 'direct']) {
    const theirs = data.highest[peer];
    if (ours !== undefined && theirs !== undefined && theirs > 0) comparisons.push({ scenario: 'UDP stream: highest rate with under 0.1% loss (CONNECT-UDP)', unit: 'datagrams/s', gatehouse: ours, peer, peerValue: theirs, higherIsBetter: true });
  }
  return { measurements, comparisons, skipped: [] };
}
