// The publisher registry at scale, by simulation (issue 22, acceptance 7): one real PostgreSQL and
// --instances cluster nodes (the gateway's own startClusterNode, in this process, without listeners),
// --publishers publishers each carried by --k instances, then --churn reconnects per second (a publisher's
// connection moving to another instance) for --seconds. Reports how long a registration takes to reach the
// other instances' views (p50/p99), the cost of a lookup in a view (50,000 tunnels' worth), and the
// database's load (CPU seconds per second of its processes, rows read and written per second).
// Usage: node bench/cluster-registry.ts [--instances 10] [--publishers 10000] [--k 2] [--churn 20] [--seconds 30] [--lease 6]
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startClusterNode, type ClusterNode } from '../src/cluster/clusterNode.ts';
import type { CarriedPublisher } from '../src/cluster/publisherLeases.ts';
import { migrate } from '../src/cluster/migrations.ts';
import { startMigratedPostgres } from '../test/support/postgres.ts';

const { values: args } = parseArgs({
  options: {
    instances: { type: 'string', default: '10' },
    publishers: { type: 'string', default: '10000' },
    k: { type: 'string', default: '2' },
    churn: { type: 'string', default: '20' },
    seconds: { type: 'string', default: '30' },
    lease: { type: 'string', default: '6' },
  },
});
const instanceCount = Number(args.instances);
const publisherCount = Number(args.publishers);
const k = Number(args.k);
const churnPerSecond = Number(args.churn);
const seconds = Number(args.seconds);
const leaseSeconds = Number(args.lease);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const db = await startMigratedPostgres();
// Reads the database's own statistics while the simulation runs.
const setup = new pg.Client({ connectionString: db.url });
await setup.connect();

/** CPU seconds (user + system) of the database server's processes: the postmaster owning `dir` and its children. */
function databaseCpuSeconds(): number {
  const ticks = 100; // USER_HZ on Linux
  const stats = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).flatMap((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return [{ pid: Number(pid), cmd, fields: stat.slice(stat.lastIndexOf(')') + 2).split(' ') }];
    } catch {
      return [];
    }
  });
  const postmaster = stats.find((s) => s.cmd.includes(db.dir) && s.cmd.startsWith('/usr/lib/postgresql'));
  if (!postmaster) return NaN;
  const ours = stats.filter((s) => s.pid === postmaster.pid || Number(s.fields[1]) === postmaster.pid);
  return ours.reduce((sum, s) => sum + (Number(s.fields[11]) + Number(s.fields[12])) / ticks, 0);
}
async function databaseRows(): Promise<{ read: number; written: number; commits: number }> {
  const { rows } = await setup.query<{ read: string; written: string; commits: string }>(
    `SELECT tup_returned + tup_fetched AS read, tup_inserted + tup_updated + tup_deleted AS written, xact_commit AS commits FROM pg_stat_database WHERE datname = current_database()`,
  );
  const row = rows[0] as { read: string; written: string; commits: string };
  return { read: Number(row.read), written: Number(row.written), commits: Number(row.commits) };
}

interface SimInstance {
  name: string;
  node: ClusterNode;
  carried: Map<string, CarriedPublisher>;
}
const settings = { postgres: db.url, instance: 'sim', staleSeconds: 10, whenStale: 'deny' as const, publisherLeaseSeconds: leaseSeconds };
const instances: SimInstance[] = [];
for (let i = 0; i < instanceCount; i++) {
  const name = `sim${i}`;
  const carried = new Map<string, CarriedPublisher>();
  const me = { id: randomUUID(), name, host: 'bench', pid: process.pid, peerAddress: `127.0.0.1:${20000 + i}`, version: 'bench', configHash: 'sha256:bench', startedAt: new Date() };
  const node = startClusterNode({ ...settings, instance: name }, me, {}, { carried: () => [...carried.values()], leaseSeconds });
  instances.push({ name, node, carried });
}
for (const i of instances) await i.node.firstSync(10_000);

// Each publisher: one user, one service, k connections on k distinct instances.
const placement: number[][] = [];
const pick = (avoid: readonly number[]) => {
  for (;;) {
    const n = Math.floor(Math.random() * instanceCount);
    if (!avoid.includes(n)) return n;
  }
};
const publisherOf = (p: number, conn: number): CarriedPublisher => ({ publisher: `pub${p}.${conn}`, identity: `process${p}`, user: `user${p}`, service: 'svc', fingerprint: `sha256:${p.toString(16).padStart(64, '0')}` });
for (let p = 0; p < publisherCount; p++) {
  const on: number[] = [];
  for (let c = 0; c < k; c++) {
    const n = pick(on);
    on.push(n);
    (instances[n] as SimInstance).carried.set(`pub${p}`, { ...publisherOf(p, c) });
  }
  placement.push(on);
}
const loadStart = performance.now();
for (const i of instances) i.node.publishersChanged();
// Converged when every instance sees every lease but its own.
const expected = (i: SimInstance) => publisherCount * k - i.carried.size;
while (instances.some((i) => i.node.publishers.size() < expected(i))) {
  if (performance.now() - loadStart > 120_000) throw new Error(`not converged after 120 s: ${instances.map((i) => `${i.node.publishers.size()}/${expected(i)}`).join(' ')}`);
  await sleep(50);
}
const convergedMs = performance.now() - loadStart;

// Lookups: what a request or tunnel for a published service does on an instance that does not carry it.
const viewer = instances[0] as SimInstance;
const lookups: number[] = [];
for (let t = 0; t < 50_000; t++) {
  const p = Math.floor(Math.random() * publisherCount);
  const started = process.hrtime.bigint();
  viewer.node.publishers.carriers(`user${p}`, 'svc');
  lookups.push(Number(process.hrtime.bigint() - started) / 1000);
}

// Churn: each move takes publisher p's connection off instance `from` and onto `to`; another instance
// watches until its view lists `to` as a carrier (a sample of the moves, so the watching costs little).
const latencies: number[] = [];
const watched: Array<{ p: number; to: number; at: number; watcher: SimInstance }> = [];
const cpuBefore = databaseCpuSeconds();
const rowsBefore = await databaseRows();
const churnStart = performance.now();
let moves = 0;
const watcher = setInterval(() => {
  const now = performance.now();
  for (let w = watched.length - 1; w >= 0; w--) {
    const { p, to, at, watcher: i } = watched[w] as (typeof watched)[number];
    if (i.node.publishers.carriers(`user${p}`, 'svc').some((r) => r.instance === `sim${to}`)) {
      latencies.push(now - at);
      watched.splice(w, 1);
    }
  }
}, 5);
while (performance.now() - churnStart < seconds * 1000) {
  const p = Math.floor(Math.random() * publisherCount);
  const on = placement[p] as number[];
  const slot = Math.floor(Math.random() * on.length);
  const from = on[slot] as number;
  const to = pick(on);
  const conn = publisherOf(p, moves + k);
  (instances[from] as SimInstance).carried.delete(`pub${p}`);
  (instances[to] as SimInstance).carried.set(`pub${p}`, conn);
  on[slot] = to;
  instances[from]?.node.publishersChanged();
  instances[to]?.node.publishersChanged();
  if (moves % 5 === 0) watched.push({ p, to, at: performance.now(), watcher: instances[pick([to])] as SimInstance });
  moves += 1;
  await sleep(1000 / churnPerSecond);
}
const churnSeconds = (performance.now() - churnStart) / 1000;
const cpu = (databaseCpuSeconds() - cpuBefore) / churnSeconds;
const rowsAfter = await databaseRows();
await sleep(2000);
clearInterval(watcher);

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
};
const line = (text: string) => process.stdout.write(`${text}\n`);
line(`registry: ${instanceCount} instances, ${publisherCount} publishers x ${k} connections = ${publisherCount * k} leases (lease ${leaseSeconds} s), one PostgreSQL`);
line(`  initial load: every instance's view complete after ${(convergedMs / 1000).toFixed(1)} s`);
line(`  lookup in a view (50,000 tunnels' worth): p50 ${quantile(lookups, 0.5).toFixed(2)} us, p99 ${quantile(lookups, 0.99).toFixed(2)} us`);
line(`  churn: ${moves} moves in ${churnSeconds.toFixed(1)} s (${(moves / churnSeconds).toFixed(1)}/s); a new carrier seen by another instance after p50 ${quantile(latencies, 0.5).toFixed(0)} ms, p99 ${quantile(latencies, 0.99).toFixed(0)} ms (${latencies.length} samples, ${watched.length} not seen)`);
line(`  database under churn: ${cpu.toFixed(2)} CPU s/s; ${((rowsAfter.read - rowsBefore.read) / churnSeconds).toFixed(0)} rows read/s, ${((rowsAfter.written - rowsBefore.written) / churnSeconds).toFixed(0)} rows written/s, ${((rowsAfter.commits - rowsBefore.commits) / churnSeconds).toFixed(0)} commits/s`);
for (const i of instances) await i.node.close();
await setup.end();
await db.remove();
