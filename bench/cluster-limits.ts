// A per-identity limit held by a cluster (issue 22, acceptance 5): three `gatehouse serve` instances on one
// real PostgreSQL, alice limited to --rate req/s; clients hammer all three at once (keep-alive, no pause
// but a short one after a refusal) for --seconds. Reports what alice got per second, overall and after the
// first two seconds (the shares settle once each instance has heard the others' demand), and per instance.
// Usage: node bench/cluster-limits.ts [--rate 100] [--seconds 10] [--connections 4] [--split even|skewed]
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startEchoService } from '../src/demo/echoService.ts';
import { inOneHour, makeRootKey, mintRaw, startHarness, type Harness } from '../test/support/gatewayHarness.ts';
import { startMigratedPostgres } from '../test/support/postgres.ts';

const { values: args } = parseArgs({
  options: { rate: { type: 'string', default: '100' }, seconds: { type: 'string', default: '10' }, connections: { type: 'string', default: '4' }, split: { type: 'string', default: 'even' } },
});
const rate = Number(args.rate);
const seconds = Number(args.seconds);
const connections = Number(args.connections);
// skewed: one instance gets most of the clients, as an unlucky balancer would give it.
const clientsOf = (i: number) => (args.split === 'skewed' ? (i === 0 ? connections * 2 : 1) : connections);

const db = await startMigratedPostgres();

const rootKey = makeRootKey();
const routes = `  - name: demo\n    path: /demo/\n    upstream: unix:run/demo.sock\n    policy: |\n      allow if user($u);\n`;
const gateways: Array<{ h: Harness; pool: Pool }> = [];
for (const name of ['gw1', 'gw2', 'gw3']) {
  const extraTop = `cluster:\n  postgres: ${db.url}\n  instance: ${name}\n  staleSeconds: 10\nlimits:\n  requestsPerSecond: ${rate}\n  requestBurst: ${rate}\n`;
  const h = await startHarness({ routes, rootKey, ...(gateways[0] && { pki: gateways[0].h.pki }), extraTop });
  await startEchoService(join(h.dir, 'run', 'demo.sock'), name);
  gateways.push({ h, pool: undefined as unknown as Pool });
}
const alice = await (gateways[0] as { h: Harness }).h.pki.client('alice');
gateways.forEach((g, i) => (g.pool = new Pool(`https://localhost:${g.h.port}`, { connections: clientsOf(i), connect: { ca: g.h.pki.caCert, cert: alice.cert, key: alice.key, servername: 'localhost' } })));
const token = mintRaw(rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
await sleep(2500); // every instance has heard the others

const start = performance.now();
const end = start + seconds * 1000;
const allowedAt: number[] = [];
const perInstance = gateways.map(() => ({ allowed: 0, refused: 0, errors: 0 }));
await Promise.all(
  gateways.flatMap((g, i) =>
    Array.from({ length: clientsOf(i) }, async () => {
      const tally = perInstance[i] as { allowed: number; refused: number; errors: number };
      while (performance.now() < end) {
        try {
          const res = await g.pool.request({ method: 'GET', path: '/demo/x', headers: { authorization: `Bearer ${token}` } });
          await res.body.dump();
          if (res.statusCode === 200) {
            tally.allowed += 1;
            allowedAt.push(performance.now() - start);
          } else {
            tally.refused += 1;
            await sleep(2);
          }
        } catch {
          tally.errors += 1;
        }
      }
    }),
  ),
);
const settled = allowedAt.filter((t) => t >= 2000).length / (seconds - 2);
const perSecond = Array.from({ length: seconds }, (_, s) => allowedAt.filter((t) => t >= s * 1000 && t < (s + 1) * 1000).length);
process.stdout.write(`limit ${rate} req/s held by 3 instances, ${args.split} load, ${seconds} s\n`);
process.stdout.write(`  allowed: ${allowedAt.length} in ${seconds} s = ${(allowedAt.length / seconds).toFixed(1)}/s overall (burst ${rate} included); ${settled.toFixed(1)}/s after the first 2 s\n`);
process.stdout.write(`  per second: ${perSecond.join(' ')}\n`);
process.stdout.write(`  per instance (allowed/refused/errors): ${perInstance.map((p) => `${p.allowed}/${p.refused}/${p.errors}`).join('  ')}\n`);
for (const g of gateways) {
  await g.pool.close();
  await g.h.stop();
}
await db.remove();
