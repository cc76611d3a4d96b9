// Measures what a hostile client can make the gateway write to its audit log (issue 16, acceptance 2
// and 6): a token whose failing check prints megabytes, and a crowd of addresses without certificates.
// Usage: node bench/hostile-audit.ts [--seconds 10] [--connections 8] [--crowd 20000] [--concurrency 200] [--only amplification|crowd]
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { Pool } from 'undici';
import { inOneHour, mintRaw, runGatehouse, startHarness, type Harness } from '../test/support/gatewayHarness.ts';
import type { TestClientCertificate } from '../test/support/pki.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    connections: { type: 'string', default: '8' },
    crowd: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '200' },
    only: { type: 'string' },
  },
});
const MAX_TOKEN_BYTES = 8192;

const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
`;

async function gateway(): Promise<{ h: Harness; metrics: string; close(): Promise<void> }> {
  const h = await startHarness({ routes, extraTop: 'metrics:\n  listen: 127.0.0.1:0\n' });
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok\n'));
  });
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  await new Promise<void>((resolve) => upstream.listen(join(h.dir, 'run', 'web.sock'), () => resolve()));
  const start = await h.waitForAudit((r) => r.event === 'gateway.start');
  return {
    h,
    metrics: `http://${String(start.detail?.metrics)}/metrics`,
    async close() {
      await h.stop();
      upstream.close();
    },
  };
}

function pool(h: Harness, client: TestClientCertificate, connections: number): Pool {
  return new Pool(`https://localhost:${h.port}`, { connections, pipelining: 1, connect: { ca: h.pki.caCert, cert: client.cert, key: client.key, servername: 'localhost' } });
}

async function metric(url: string, name: RegExp): Promise<number> {
  const text = await (await fetch(url)).text();
  return [...text.matchAll(new RegExp(`^${name.source}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
}

/** The largest token under maxTokenBytes whose appended check repeats one 2,700-character string (biscuit stores it once). */
function amplifyingToken(base: string, rootPublic: string): { token: string; strings: number } {
  const root = biscuit.PublicKey.fromString(rootPublic.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519);
  const make = (n: number) => {
    const block = biscuit.Biscuit.block_builder();
    block.addCode(`check if path($p), [${Array.from({ length: n }, () => JSON.stringify('x'.repeat(2700))).join(', ')}].contains($p);`);
    return biscuit.Biscuit.fromBase64(base, root).appendBlock(block).toBase64();
  };
  let n = 100;
  while (make(n + 20).length <= MAX_TOKEN_BYTES) n += 20;
  return { token: make(n), strings: n };
}

/** Sequential requests as a bystander until `until`; counts statuses. */
async function bystander(p: Pool, token: string, until: number): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  for (let i = 0; Date.now() < until; i += 1) {
    let status = 0;
    try {
      const res = await p.request({ path: `/web/bystander/${i}`, method: 'GET', headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      status = res.statusCode;
    } catch {
      status = 0;
    }
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 50));
  }
  return statuses;
}

const show = (m: Map<number, number>) => [...m].sort(([a], [b]) => a - b).map(([s, n]) => `${s === 0 ? 'error' : s}: ${n}`).join(', ');

async function amplification(): Promise<void> {
  const g = await gateway();
  const { h } = g;
  try {
    const alice = await h.pki.client('alice');
    const bob = await h.pki.client('bob');
    const authority = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    const bobToken = mintRaw(h.rootKey.privateKey, `user("bob"); check if time($t), $t <= ${inOneHour()};`);
    const { token, strings } = amplifyingToken(authority, h.rootKey.publicKey);
    const startBytes = statSync(h.auditFile).size;
    const seconds = Number(args.seconds);
    const until = Date.now() + seconds * 1000;
    const attackerPool = pool(h, alice, Number(args.connections));
    const bystanderPool = pool(h, bob, 1);
    const attack = new Map<number, number>();
    const loops = Array.from({ length: Number(args.connections) }, async (_, c) => {
      for (let i = 0; Date.now() < until; i += 1) {
        let status = 0;
        try {
          const res = await attackerPool.request({ path: `/web/amp/${c}/${i}`, method: 'GET', headers: { authorization: `Bearer ${token}` } });
          await res.body.dump();
          status = res.statusCode;
        } catch {
          status = 0;
        }
        attack.set(status, (attack.get(status) ?? 0) + 1);
      }
    });
    const watching = bystander(bystanderPool, bobToken, until);
    await Promise.all(loops);
    const bystanderStatuses = await watching;
    await Promise.all([attackerPool.close(), bystanderPool.close()]);
    await new Promise((r) => setTimeout(r, 500));
    const dropped = await metric(g.metrics, /gatehouse_audit_dropped_records_total/);
    const suppressed = await metric(g.metrics, /gatehouse_audit_suppressed_records_total/);
    await g.close();
    const lines = h.audit();
    const growth = statSync(h.auditFile).size - startBytes;
    const largest = Math.max(...lines.map((r) => Buffer.byteLength(JSON.stringify(r))));
    const verify = await runGatehouse(['audit', 'verify', '--unsigned', h.auditFile]);
    const bystander5xx = [...bystanderStatuses].filter(([s]) => s >= 500 || s === 0).reduce((n, [, k]) => n + k, 0);
    console.log(`amplification: token ${token.length} bytes (${strings} references to one 2,700-character string), ${args.connections} connections for ${seconds} s`);
    console.log(`  attacker answers: ${show(attack)}`);
    console.log(`  bystander answers: ${show(bystanderStatuses)} (5xx or errors: ${bystander5xx})`);
    console.log(`  audit growth ${growth} bytes (${(growth / 2 ** 20).toFixed(2)} MiB) in ${lines.length} records; largest record ${largest} bytes`);
    console.log(`  records dropped: ${dropped}; records suppressed by budget: ${suppressed}; audit verify: exit ${verify.code} ${verify.stdout.trim().split('\n')[0] ?? ''}`);
  } catch (err) {
    await g.close();
    throw err;
  }
}

/** CPU seconds (user + system) the process has used, from /proc; 0 where there is no /proc. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** One plaintext connection from `address` that sends an HTTP request to the TLS port and waits for the close. */
function plaintext(port: number, address: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress: address }, () => socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.resume();
  });
}

async function crowd(): Promise<void> {
  const g = await gateway();
  const { h } = g;
  try {
    const alice = await h.pki.client('alice');
    const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    const startBytes = statSync(h.auditFile).size;
    const total = Number(args.crowd);
    // 127.100.0.1 onwards: 250 hosts per /24 so no address ends in .0 or .255.
    const address = (i: number) => `127.${100 + Math.floor(i / 62_500)}.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`;
    const legitimatePool = pool(h, alice, 1);
    let flooding = true;
    const legitimate = (async () => {
      const statuses = new Map<number, number>();
      while (flooding) for (const [s, n] of await bystander(legitimatePool, token, Date.now() + 500)) statuses.set(s, (statuses.get(s) ?? 0) + n);
      return statuses;
    })();
    const started = performance.now();
    const cpuBefore = cpuSeconds(h.proc.pid);
    let next = 0;
    await Promise.all(
      Array.from({ length: Number(args.concurrency) }, async () => {
        while (next < total) await plaintext(h.port, address(next++));
      }),
    );
    const floodSeconds = (performance.now() - started) / 1000;
    const gatewayCpu = cpuSeconds(h.proc.pid) - cpuBefore;
    flooding = false;
    const legitimateStatuses = await legitimate;
    await legitimatePool.close();
    const suppressed = await metric(g.metrics, /gatehouse_audit_suppressed_records_total/);
    const rejects = await metric(g.metrics, /gatehouse_tls_rejects_total/);
    // SIGTERM: the gateway writes the summary of what it left out before gateway.stop.
    await g.close();
    const records = h.audit();
    const rejectRecords = records.filter((r) => r.event === 'tls.reject');
    const written = rejectRecords.length;
    const rejectBytes = rejectRecords.reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r)) + 1, 0);
    const summaries = records.filter((r) => r.event === 'audit.suppressed');
    const growth = statSync(h.auditFile).size - startBytes;
    console.log(`crowd: ${total} plaintext connections from ${total} loopback addresses in ${floodSeconds.toFixed(1)} s (${Math.round(total / floodSeconds)}/s); gateway CPU ${gatewayCpu.toFixed(2)} s (${Math.round((gatewayCpu / total) * 1e6)} µs per connection)`);
    console.log(`  handshakes refused (metric): ${rejects}; tls.reject records written: ${written}; suppressed (metric): ${suppressed}; summary records: ${summaries.length}`);
    console.log(`  audit bytes written from the first connection to the stop: ${growth} (${(growth / 2 ** 10).toFixed(1)} KiB), of which tls.reject records ${rejectBytes} (${written > 0 ? Math.round(rejectBytes / written) : 0} bytes each)`);
    console.log(`  legitimate client during the flood: ${show(legitimateStatuses)}`);
    for (const s of summaries) console.log(`  summary: ${JSON.stringify(s.detail)}`);
  } catch (err) {
    await g.close();
    throw err;
  }
}

if (args.only !== 'crowd') await amplification();
if (args.only !== 'amplification') await crowd();
