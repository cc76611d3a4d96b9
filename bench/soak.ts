// Soak: a real gateway holding 1,000 CONNECT tunnels to a UNIX-socket echo service, under steady HTTP
// load and a trickle of hostile clients, for minutes; memory, fds, errors, and an audit log that adds up.
// Usage: node bench/soak.ts [--minutes 10] [--tunnels 1000] [--rps 300] [--hostile 2] [--ping-seconds 5]
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { mintRaw, startHarness, type Harness } from '../test/support/gatewayHarness.ts';
import { echoHandler, listenUnix } from '../test/support/tunnelClient.ts';
import { checkAudit } from './support/soakAudit.ts';
import { startHostileTrickle } from './support/soakHostile.ts';
import { startHttpLoad, startHttpUpstream } from './support/soakHttp.ts';
import { Ledger } from './support/soakLedger.ts';
import { openTunnels } from './support/soakTunnels.ts';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    tunnels: { type: 'string', default: '1000' },
    rps: { type: 'string', default: '300' },
    hostile: { type: 'string', default: '2' },
    'ping-seconds': { type: 'string', default: '5' },
    'sample-seconds': { type: 'string', default: '5' },
  },
});
const minutes = Number(args.minutes);
const tunnelCount = Number(args.tunnels);
const rps = Number(args.rps);
const hostilePerSecond = Number(args.hostile);
const sampleMs = Number(args['sample-seconds']) * 1000;
const handshakeTimeoutSeconds = 5;

const routes = `  - name: echo
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if user($u);
  - name: api
    path: /
    upstream: unix:run/http.sock
    policy: |
      allow if user($u);
`;
// Raised well past what the soak opens: it measures endurance, not the limits themselves.
const limits = `limits:
  connections: ${tunnelCount * 2 + 2000}
  connectionsPerSource: ${tunnelCount * 2 + 2000}
  tunnelsPerIdentity: ${tunnelCount * 2}
  requestsPerSecond: ${Math.max(1000, rps * 10)}
  requestBurst: ${Math.max(2000, rps * 20)}
  handshakeTimeoutSeconds: ${handshakeTimeoutSeconds}
`;

interface Sample {
  atSeconds: number;
  rssMiB: number;
  fds: number;
}

function sampleProcess(pid: number, started: number): Sample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) / 1024;
    return { atSeconds: Math.round((performance.now() - started) / 100) / 10, rssMiB: Math.round(rss * 10) / 10, fds: readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return undefined;
  }
}

const quantile = (xs: number[], q: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);
};
/** SIGTERM, then SIGKILL after `graceMs`: a gateway that does not stop is a finding, not a hang of the soak. */
async function stopGateway(h: Harness, graceMs: number): Promise<{ exitCode: number | null; stoppedOnTerm: boolean; stopSeconds: number }> {
  const t0 = performance.now();
  const exited = h.stop('SIGTERM');
  const inTime = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!inTime) h.proc.kill('SIGKILL');
  return { exitCode: await exited, stoppedOnTerm: inTime, stopSeconds: Math.round((performance.now() - t0) / 100) / 10 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (text: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);

async function main(): Promise<number> {
  const ledger = new Ledger();
  const h = await startHarness({ routes, extraTop: limits });
  const pid = h.proc.pid as number;
  const started = performance.now();
  const samples: Sample[] = [];
  const phases: Record<string, Sample | undefined> = {};
  const sample = () => {
    const s = sampleProcess(pid, started);
    if (s) samples.push(s);
    return s;
  };

  const echo = await listenUnix(join(h.dir, 'run', 'echo.sock'), echoHandler);
  const upstream = await startHttpUpstream(join(h.dir, 'run', 'http.sock'), ledger);
  const expiry = new Date(Date.now() + (minutes + 30) * 60_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const token = mintRaw(h.rootKey.privateKey, `user("soak"); check if time($t), $t <= ${expiry};`);
  const cert = async (name: string) => {
    const c = await h.pki.client(name);
    return { ca: h.pki.caCert, cert: c.cert, key: c.key };
  };
  const [tunnelCreds, httpCreds, hostileCreds] = await Promise.all([cert('soak-tunnels'), cert('soak-http'), cert('soak-hostile')]);
  await sleep(1000);
  phases.idle = sample();
  log(`gateway pid ${pid} on port ${h.port}: ${phases.idle?.rssMiB} MiB, ${phases.idle?.fds} fds; opening ${tunnelCount} tunnels`);

  const echoLatencies: number[] = [];
  const pingIntervalMs = Number(args['ping-seconds']) * 1000;
  const tunnelOpts = { port: h.port, creds: tunnelCreds, token, route: 'echo', pingIntervalMs, echoTimeoutMs: 10_000 };
  const rampStarted = performance.now();
  const tunnels = await openTunnels(tunnelCount, 32, tunnelOpts, ledger, echoLatencies);
  const rampSeconds = (performance.now() - rampStarted) / 1000;
  phases.start = sample();
  log(`${tunnels.length} tunnels open in ${rampSeconds.toFixed(1)} s: ${phases.start?.rssMiB} MiB, ${phases.start?.fds} fds; load for ${minutes} min`);

  const http = startHttpLoad({ port: h.port, creds: httpCreds, token, requestsPerSecond: rps, connections: 16, maxInFlight: 512 }, ledger);
  const hostile = startHostileTrickle(
    { port: h.port, anonymous: { ca: h.pki.caCert }, creds: hostileCreds, token, connectionsPerSecond: hostilePerSecond, stallLimitMs: (handshakeTimeoutSeconds + 10) * 1000 },
    ledger,
  );
  const until = performance.now() + minutes * 60_000;
  let nextReport = performance.now() + 30_000;
  while (performance.now() < until) {
    await sleep(Math.min(sampleMs, until - performance.now()));
    const s = sample();
    if (performance.now() >= nextReport && s) {
      nextReport += 30_000;
      log(`${s.rssMiB} MiB, ${s.fds} fds, ${ledger.counts.get('http 200') ?? 0} HTTP 200, ${ledger.counts.get('echoes') ?? 0} echoes, ${ledger.errorTotal} errors`);
    }
  }
  await Promise.all([hostile.stop(), http.stop()]);
  phases.end = sample();
  log('load stopped; closing tunnels');
  const closed = await Promise.all(tunnels.map((t) => t.close()));
  await sleep(3000);
  phases.afterClose = sample();
  const stopped = await stopGateway(h, 20_000);
  if (!stopped.stoppedOnTerm) ledger.error('gateway did not exit within 20 s of SIGTERM');
  echo.close();
  upstream.close();
  const audit = await checkAudit(h.auditFile, ledger);

  const peak = {
    rssMiB: Math.max(...samples.map((s) => s.rssMiB)),
    fds: Math.max(...samples.map((s) => s.fds)),
  };
  const counts = Object.fromEntries(ledger.counts);
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    settings: { minutes, tunnels: tunnelCount, rps, hostilePerSecond, pingSeconds: pingIntervalMs / 1000 },
    rampSeconds: Math.round(rampSeconds * 10) / 10,
    tunnelsOpen: tunnels.length,
    tunnelsClosedCleanly: closed.filter(Boolean).length,
    memory: { idle: phases.idle?.rssMiB, start: phases.start?.rssMiB, peak: peak.rssMiB, end: phases.end?.rssMiB, afterClose: phases.afterClose?.rssMiB },
    fds: { idle: phases.idle?.fds, start: phases.start?.fds, peak: peak.fds, end: phases.end?.fds, afterClose: phases.afterClose?.fds },
    http: { p50Ms: quantile(http.latencies, 0.5), p99Ms: quantile(http.latencies, 0.99) },
    echo: { p50Ms: quantile(echoLatencies, 0.5), p99Ms: quantile(echoLatencies, 0.99) },
    counts,
    errors: Object.fromEntries(ledger.errors),
    errorExamples: ledger.examples,
    audit,
    gatewayStop: stopped,
    auditFile: h.auditFile,
    samples,
  };

  const f = (n: number | undefined, digits = 1) => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(digits));
  const rows: Array<[string, string]> = [
    ['duration', `${minutes} min (+ ${result.rampSeconds} s opening ${tunnelCount} tunnels)`],
    ['gateway RSS MiB idle / start / peak / end / after close', `${f(phases.idle?.rssMiB)} / ${f(phases.start?.rssMiB)} / ${f(peak.rssMiB)} / ${f(phases.end?.rssMiB)} / ${f(phases.afterClose?.rssMiB)}`],
    ['gateway fds idle / start / peak / end / after close', `${phases.idle?.fds} / ${phases.start?.fds} / ${peak.fds} / ${phases.end?.fds} / ${phases.afterClose?.fds}`],
    ['tunnels open / closed cleanly', `${tunnels.length} / ${result.tunnelsClosedCleanly}`],
    ['echoes checked, echo p50 / p99 ms', `${counts.echoes ?? 0}, ${f(result.echo.p50Ms, 2)} / ${f(result.echo.p99Ms, 2)}`],
    ['HTTP sent / 200, p50 / p99 ms', `${counts['http requests sent'] ?? 0} / ${counts['http 200'] ?? 0}, ${f(result.http.p50Ms, 2)} / ${f(result.http.p99Ms, 2)}`],
    ['hostile connections', Object.entries(counts).filter(([k]) => k.startsWith('hostile: ')).map(([k, v]) => `${k.slice(9)} ${v}`).join(', ')],
    ['stalled handshakes closed by the gateway, mean s', `${counts['stalled handshakes closed'] ?? 0} of ${counts['hostile: stalled handshake'] ?? 0}, ${f((counts['stalled handshake ms'] ?? NaN) / 1000 / (counts['stalled handshakes closed'] ?? NaN))}`],
    ['unexpected errors', ledger.errorTotal === 0 ? '0' : JSON.stringify(result.errors)],
    ['audit records', `${audit.records} (${Object.entries(audit.byEvent).map(([k, v]) => `${k} ${v}`).join(', ')})`],
    ['connections: opened / exact open+close', `${audit.connectionsExpected} / ${audit.connectionsMatched}`],
    ['refused handshakes: made / exact tls.reject', `${audit.rejectsExpected} / ${audit.rejectsMatched}`],
    ['tunnels: opened / exact tunnel.open+close', `${audit.tunnelsExpected} / ${audit.tunnelsMatched}`],
    ['audit: strangers / suppressed / internal errors', `${audit.strangers} / ${audit.suppressedRejects} / ${audit.internalErrors}`],
    ['gateway stop (SIGTERM)', `${stopped.stoppedOnTerm ? 'exited' : 'still running, killed'} after ${stopped.stopSeconds} s, code ${stopped.exitCode}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\nSoak (${process.version}, ${minutes} min)`);
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  for (const m of audit.mismatches) console.log(`audit mismatch: ${m}`);
  for (const e of ledger.examples) console.log(`error: ${e}`);

  const dir = resolve(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `soak-${result.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nresults: ${file}\naudit log: ${h.auditFile}`);
  const auditExact = audit.connectionsMatched === audit.connectionsExpected && audit.rejectsMatched === audit.rejectsExpected &&
    audit.tunnelsMatched === audit.tunnelsExpected && audit.strangers === 0 && audit.internalErrors === 0;
  return ledger.errorTotal === 0 && auditExact && tunnels.length === tunnelCount ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
