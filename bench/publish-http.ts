// HTTP through a published service against the same service by a direct `unix:` route, one gateway, one
// run: keep-alive mTLS connections each sending GETs one after another; requests/s, p50/p99, every non-200.
// Usage: node bench/publish-http.ts [--seconds 60] [--connections 16]
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startHarness } from '../test/support/gatewayHarness.ts';
import { httpAndWebSocketService, publishedRoute, startPublisher } from '../test/support/publishPeers.ts';
import { cleanEnv, gatewayFlags, writeToken } from '../test/support/tunnelClient.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, connections: { type: 'string', default: '16' } } });
const seconds = Number(args.seconds);
const connections = Number(args.connections);

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-publish-http-'));
const socket = join(dir, 'web.sock');
const service = await httpAndWebSocketService(socket);
const directRoute = `  - name: direct
    path: /direct/
    protocols: [http]
    upstream: unix:${socket}
    policy: |
      allow if user($u);
`;
const top = `publish:\n  policy: |\n    allow if user($u);\nlimits:\n  requestsPerSecond: 100000\n  requestBurst: 100000\n`;
const h = await startHarness({ routes: publishedRoute + directRoute, extraTop: top });
const alice = await h.pki.client('alice');
const tokenFile = writeToken(h, join(dir, 'alice.token'), 'alice');
const token = readFileSync(tokenFile, 'utf8').trim();
const publisher = startPublisher([...gatewayFlags(h, alice, tokenFile).slice(0, -2), `web=unix:${socket}`], cleanEnv(dir));
await publisher.waitForStderr(/published as alice/);

async function run(path: string): Promise<{ rps: number; p50: number; p99: number; statuses: Record<string, number> }> {
  const pool = new Pool(`https://localhost:${h.port}`, { connections, connect: { ca: h.pki.caCert, cert: alice.cert, key: alice.key, servername: 'localhost' } });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < until) {
        const started = performance.now();
        let status = 'error';
        try {
          const res = await pool.request({ method: 'GET', path, headers: { authorization: `Bearer ${token}` } });
          await res.body.dump();
          status = String(res.statusCode);
        } catch {
          // counted as 'error'
        }
        latencies.push(performance.now() - started);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] as number;
  return { rps: latencies.length / seconds, p50: at(0.5), p99: at(0.99), statuses };
}

try {
  const direct = await run('/direct/x');
  const published = await run('/~alice/web/x');
  console.log(`\n${connections} keep-alive connections, ${seconds} s each, same gateway and service\n`);
  console.log('| path | requests/s | p50 ms | p99 ms | statuses |');
  console.log('| --- | ---: | ---: | ---: | --- |');
  for (const [name, r] of [['direct unix: route', direct], ['published service', published]] as const) {
    console.log(`| ${name} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${JSON.stringify(r.statuses)} |`);
  }
  console.log(`\npublished / direct requests/s: ${(published.rps / direct.rps).toFixed(2)}`);
} finally {
  await publisher.stop();
  service.close();
  await h.stop();
}
