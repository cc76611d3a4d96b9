// Tunnel integrity and throughput: N MiB (default 1024) through one `gatehouse tunnel -L` tunnel, up and
// down, on both transports, checked by sha256 and against the gateway's close records; peak memory.
// Usage: node bench/tunnel-integrity.ts [--size-mib 1024] [--only connect|websocket]
import { connect } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarness, type Harness } from '../test/support/gatewayHarness.ts';
import { cleanEnv, countHandler, download, gatewayFlags, keystreamSha256, listenUnix, peakRssMiB, sourceHandler, startTunnel, upload, writeToken, type Transfer } from '../test/support/tunnelClient.ts';

const { values: args } = parseArgs({ options: { 'size-mib': { type: 'string', default: '1024' }, only: { type: 'string' } } });
const size = Number(args['size-mib']) * (1 << 20);
const transports = (['connect', 'websocket'] as const).filter((t) => !args.only || args.only === t);

const routes = `  - name: sink
    protocols: [tcp]
    upstream: unix:run/sink.sock
    policy: |
      allow if user($u);
  - name: source
    protocols: [tcp]
    upstream: unix:run/source.sock
    policy: |
      allow if user($u);
`;

interface Row {
  path: string;
  direction: 'up' | 'down';
  seconds: number;
  mbPerSecond: number;
  intact: boolean;
  auditBytes: string;
  clientPeakMiB?: number;
  gatewayPeakMiB?: number;
}

const rows: Row[] = [];
const mbps = (t: Transfer) => Math.round(size / 1e6 / (t.ms / 1000));
process.stderr.write(`expected sha256 of ${size} bytes: computing...\n`);
const expected = keystreamSha256(size);

/** Baseline: the same transfers straight to the UNIX-socket services, no gateway. */
async function direct(h: Harness): Promise<void> {
  const { createServer } = await import('node:net');
  // A local TCP port that splices to the socket, so the driver's side is identical to the tunnel runs.
  for (const [name, direction] of [['sink', 'up'], ['source', 'down']] as const) {
    const relay = createServer({ allowHalfOpen: true }, (local) => {
      const upstream = connect(join(h.dir, 'run', `${name}.sock`));
      local.pipe(upstream).on('error', () => {});
      upstream.pipe(local).on('error', () => {});
    });
    await new Promise<void>((ok) => relay.listen(0, '127.0.0.1', ok));
    const port = (relay.address() as { port: number }).port;
    const t = direction === 'up' ? await upload(port, size) : await download(port, size);
    rows.push({ path: 'node relay, no TLS (baseline)', direction, seconds: t.ms / 1000, mbPerSecond: mbps(t), intact: t.sha256 === expected && t.bytes === size, auditBytes: '-' });
    relay.close();
  }
}

async function throughTunnel(transport: 'connect' | 'websocket'): Promise<void> {
  // A fresh gateway per transport, so its peak memory belongs to this run alone.
  const h = await startHarness({ routes });
  try {
    const alice = await h.pki.client('alice');
    const tokenFile = writeToken(h, join(h.dir, 'home', 'token'), 'alice');
    const sink = await listenUnix(join(h.dir, 'run', 'sink.sock'), countHandler);
    const source = await listenUnix(join(h.dir, 'run', 'source.sock'), sourceHandler);
    if (transport === 'connect') await direct(h);
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, transport), '-L', '0:sink', '-L', '0:source'], cleanEnv(join(h.dir, 'home')), 2);
    const up = await upload(t.ready[0]?.port as number, size);
    const down = await download(t.ready[1]?.port as number, size);
    const clientPeak = peakRssMiB(t.proc.pid);
    const gatewayPeak = peakRssMiB(h.proc.pid);
    await t.stop();
    await new Promise((r) => setTimeout(r, 300));
    const closes = h.audit().filter((r) => r.event === 'tunnel.close');
    const sinkClose = closes.find((r) => r.route === 'sink');
    const sourceClose = closes.find((r) => r.route === 'source');
    rows.push({ path: `gatehouse tunnel (${transport})`, direction: 'up', seconds: up.ms / 1000, mbPerSecond: mbps(up), intact: up.bytes === size && up.sha256 === expected && up.sentSha256 === expected, auditBytes: `in ${sinkClose?.bytesIn} out ${sinkClose?.bytesOut}`, clientPeakMiB: clientPeak, gatewayPeakMiB: gatewayPeak });
    rows.push({ path: `gatehouse tunnel (${transport})`, direction: 'down', seconds: down.ms / 1000, mbPerSecond: mbps(down), intact: down.bytes === size && down.sha256 === expected, auditBytes: `in ${sourceClose?.bytesIn} out ${sourceClose?.bytesOut}`, clientPeakMiB: clientPeak, gatewayPeakMiB: gatewayPeak });
    if (sinkClose?.bytesIn !== size || sourceClose?.bytesOut !== size) rows[rows.length - 1]!.intact = false;
    sink.close();
    source.close();
  } finally {
    await h.stop();
  }
}

for (const transport of transports) await throughTunnel(transport);

console.log(`\n${size / (1 << 20)} MiB through one tunnel (sha256 ${expected.slice(0, 16)}...)\n`);
console.log('| path | direction | seconds | MB/s | byte-identical | gateway close record | client peak RSS | gateway peak RSS |');
console.log('| --- | --- | ---: | ---: | --- | --- | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.path} | ${r.direction} | ${r.seconds.toFixed(2)} | ${r.mbPerSecond} | ${r.intact ? 'yes' : 'NO'} | ${r.auditBytes} | ${r.clientPeakMiB ?? '-'} MiB | ${r.gatewayPeakMiB ?? '-'} MiB |`);
}
process.exitCode = rows.every((r) => r.intact) ? 0 : 1;
