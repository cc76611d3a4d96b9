// Revocation across a cluster (issue 22, acceptance 3 and 6): three `gatehouse serve` instances on one real
// PostgreSQL; a revocation written through the database (the code `token revoke --config` runs) and the
// time until each instance refuses the token (p50/p99 over --revocations); then the database stopped
// (fast shutdown) or frozen (SIGSTOP) for --outage-seconds: when each instance starts refusing, what the
// `whenStale: serve` one does, and how long each takes to serve again once the database is back.
// Usage: node bench/cluster-revocation.ts [--revocations 20] [--stale-seconds 10] [--outage-seconds 30] [--outage stop|pause|none]
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { Pool } from 'undici';
import { startEchoService } from '../src/demo/echoService.ts';
import { revokeShared } from '../src/cluster/clusterCommands.ts';
import { inOneHour, makeRootKey, mintRaw, runGatehouse, startHarness, type Harness } from '../test/support/gatewayHarness.ts';
import { startMigratedPostgres } from '../test/support/postgres.ts';

const { values: args } = parseArgs({
  options: { revocations: { type: 'string', default: '20' }, 'stale-seconds': { type: 'string', default: '10' }, 'outage-seconds': { type: 'string', default: '30' }, outage: { type: 'string', default: 'stop' } },
});
const revocations = Number(args.revocations);
const staleSeconds = Number(args['stale-seconds']);
const outageSeconds = Number(args['outage-seconds']);

const db = await startMigratedPostgres();

const rootKey = makeRootKey();
const routes = `  - name: demo\n    path: /demo/\n    upstream: unix:run/demo.sock\n    policy: |\n      allow if user($u);\n`;
interface Instance { name: string; whenStale: 'deny' | 'serve'; h: Harness; pool: Pool }
const instances: Instance[] = [];
for (const [name, whenStale] of [['gw1', 'deny'], ['gw2', 'deny'], ['gw3', 'serve']] as const) {
  const extraTop = `cluster:\n  postgres: ${db.url}\n  instance: ${name}\n  staleSeconds: ${staleSeconds}\n  whenStale: ${whenStale}\nlimits:\n  requestsPerSecond: 100000\n  requestBurst: 100000\n`;
  const h = await startHarness({ routes, rootKey, extraTop });
  await startEchoService(join(h.dir, 'run', 'demo.sock'), name);
  const alice = await h.pki.client('alice');
  const pool = new Pool(`https://localhost:${h.port}`, { connections: 1, connect: { ca: h.pki.caCert, cert: alice.cert, key: alice.key, servername: 'localhost' } });
  instances.push({ name, whenStale, h, pool });
}
const settings = { postgres: db.url, instance: 'bench', staleSeconds, whenStale: 'deny' as const };
const publicKey = biscuit.PublicKey.fromString(rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519);
const token = (user: string) => mintRaw(rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()};`);
const idOf = (t: string) => String(biscuit.Biscuit.fromBase64(t, publicKey).getRevocationIdentifiers()[0]);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function statusOf(i: Instance, t: string): Promise<number> {
  try {
    const res = await i.pool.request({ method: 'GET', path: '/demo/x', headers: { authorization: `Bearer ${t}` } });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0;
  }
}

/** Asks `i` again and again (one keep-alive connection, no pause) until it answers `wanted`; ms since `since`, or NaN after `limitMs`. */
async function until(i: Instance, t: string, wanted: number, since: number, limitMs: number): Promise<number> {
  while (performance.now() - since < limitMs) if ((await statusOf(i, t)) === wanted) return performance.now() - since;
  return Number.NaN;
}

const quantile = (values: number[], q: number) => {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
};
const ms = (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : 'never');

// 1. Revocation latency: from the start of the write (BEGIN .. COMMIT with NOTIFY) to the first 403 on each instance.
const perInstance = new Map<string, number[]>(instances.map((i) => [i.name, []]));
const commitMs: number[] = [];
/** The same, counted from the write's return (COMMIT answered): the notification's part. */
const afterCommit: number[] = [];
for (let n = 0; n < revocations; n++) {
  const t = token(`user${n}`);
  for (const i of instances) if ((await statusOf(i, t)) !== 200) throw new Error(`${i.name} does not serve the fresh token`);
  const started = performance.now();
  const refused = instances.map((i) => until(i, t, 403, started, 10_000));
  await revokeShared(settings, [idOf(t)]);
  commitMs.push(performance.now() - started);
  const times = await Promise.all(refused);
  instances.forEach((i, k) => perInstance.get(i.name)?.push(times[k] as number));
  afterCommit.push(...times.map((v) => v - (commitMs.at(-1) as number)));
  await sleep(100);
}
const all = [...perInstance.values()].flat();
process.stdout.write(`\nrevocation through the database -> refused (${revocations} revocations, 3 instances, polled back to back on one keep-alive connection each)\n`);
process.stdout.write(`  write (connect, BEGIN, INSERT, NOTIFY, COMMIT): p50 ${ms(quantile(commitMs, 0.5))}, p99 ${ms(quantile(commitMs, 0.99))}\n`);
for (const [name, times] of perInstance) process.stdout.write(`  ${name}: p50 ${ms(quantile(times, 0.5))}, p99 ${ms(quantile(times, 0.99))}, max ${ms(Math.max(...times))}, missed ${times.filter((v) => !Number.isFinite(v)).length}\n`);
process.stdout.write(`  all: p50 ${ms(quantile(all, 0.5))}, p99 ${ms(quantile(all, 0.99))}; counted from COMMIT's answer: p50 ${ms(quantile(afterCommit, 0.5))}, p99 ${ms(quantile(afterCommit, 0.99))}\n`);

// The command an operator runs, once, end to end (Node start, config load, write).
const cliToken = token('cli');
const cliStarted = performance.now();
const cliRefused = instances.map((i) => until(i, cliToken, 403, cliStarted, 20_000));
const cli = await runGatehouse(['token', 'revoke', '--config', join(instances[0]?.h.dir ?? '', 'routes.yaml'), '--id', idOf(cliToken)]);
const cliDone = performance.now() - cliStarted;
process.stdout.write(`  \`gatehouse token revoke --config\` (exit ${cli.code}): command ${ms(cliDone)}; refused by ${(await Promise.all(cliRefused)).map(ms).join(', ')} after its start\n`);

// 2. Database outage.
if (args.outage !== 'none') {
  const fresh = token('outage');
  const revokedBefore = token('revoked-before');
  await revokeShared(settings, [idOf(revokedBefore)]);
  await sleep(500);
  const stopped = performance.now();
  if (args.outage === 'pause') db.pause();
  else await db.stop();
  process.stdout.write(`\ndatabase ${args.outage === 'pause' ? 'frozen (SIGSTOP)' : 'stopped (fast shutdown)'} for ${outageSeconds} s, staleSeconds ${staleSeconds}\n`);
  const firstRefusal = await Promise.all(instances.map(async (i) => {
    const limit = outageSeconds * 1000;
    while (performance.now() - stopped < limit) {
      const s = await statusOf(i, fresh);
      if (s !== 200) return { at: performance.now() - stopped, status: s };
      await sleep(20);
    }
    return { at: Number.NaN, status: 200 };
  }));
  instances.forEach((i, k) => process.stdout.write(`  ${i.name} (whenStale: ${i.whenStale}): ${Number.isFinite(firstRefusal[k]?.at) ? `refuses new authorizations (${firstRefusal[k]?.status}) ${ms(firstRefusal[k]?.at as number)} after the outage began` : 'kept serving throughout'}\n`));
  const stillRefused = await Promise.all(instances.map((i) => statusOf(i, revokedBefore)));
  process.stdout.write(`  a token revoked before the outage, during it: ${instances.map((i, k) => `${i.name} ${stillRefused[k]}`).join(', ')}\n`);
  await sleep(Math.max(0, outageSeconds * 1000 - (performance.now() - stopped)));
  const restarted = performance.now();
  if (args.outage === 'pause') db.resume();
  else await db.start();
  const up = performance.now() - restarted;
  const recovered = await Promise.all(instances.map((i) => until(i, fresh, 200, restarted, 60_000)));
  process.stdout.write(`  database back (${args.outage === 'pause' ? 'SIGCONT' : `ready ${ms(up)} after start`}); serving again after: ${instances.map((i, k) => `${i.name} ${ms(recovered[k] as number)}`).join(', ')}\n`);
  const after = token('after');
  for (const i of instances) await statusOf(i, after);
  const revokeAfter = performance.now();
  const refusedAfter = instances.map((i) => until(i, after, 403, revokeAfter, 10_000));
  await revokeShared(settings, [idOf(after)]);
  process.stdout.write(`  a revocation right after: refused in ${(await Promise.all(refusedAfter)).map(ms).join(', ')}\n`);
  for (const i of instances) {
    const records = i.h.audit().filter((r) => r.event === 'cluster.database').map((r) => `${r.time.slice(11, 23)} ${String(r.detail?.state)}${r.detail?.staleForMs !== undefined ? ` (stale for ${String(r.detail.staleForMs)} ms)` : ''}${r.reason ? `: ${r.reason.slice(0, 90)}` : ''}`);
    process.stdout.write(`  ${i.name} audit: ${records.join(' | ')}\n`);
  }
}

for (const i of instances) {
  await i.pool.close();
  await i.h.stop();
}
await db.remove();
process.exit(0);
