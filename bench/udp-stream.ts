// A detector-like stream: 1 KiB sequence-numbered datagrams at fixed, increasing rates, sent straight to a sink,
// through socat as a plain UDP relay, and through `gatehouse tunnel -L udp:` (CONNECT-UDP over HTTP/1.1 and HTTP/2,
// WebSocket; and to the sink published by `gatehouse publish sink=udp:…`) in one run.
// Usage: node bench/udp-stream.ts [--seconds 5] [--rates 1000,5000,10000,20000,40000] [--only direct,socat,connect,http2,websocket,published] [--json FILE]
// Per path and rate: delivered datagrams/s, loss, reordering; and the highest rate with under 0.1% loss.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cli, cliNode, startHarness } from '../test/support/gatewayHarness.ts';
import { freePort, which } from '../test/support/localServices.ts';
import { cleanEnv, gatewayFlags, startTunnel, writeToken, type TunnelProcess } from '../test/support/tunnelClient.ts';
import { publishedUdpRoute, publishFlags, startPublisher } from '../test/support/publishPeers.ts';

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, rates: { type: 'string', default: '1000,5000,10000,20000,40000' }, only: { type: 'string' }, json: { type: 'string' } } });
const seconds = Number(args.seconds);
const rates = args.rates.split(',').map(Number);
const only = args.only?.split(',');
const wanted = (key: string) => !only || only.includes(key);
const LOSS_GOAL = 0.001;

/** What the sink saw of one run: sequence numbers (a bitmap), how many came after a later one. */
class SinkRun {
  readonly seen: Uint8Array;
  received = 0;
  repeated = 0;
  reordered = 0;
  #highest = -1;
  constructor(total: number) {
    this.seen = new Uint8Array(total);
  }
  take(seq: number): void {
    if (seq >= this.seen.length) return;
    if (this.seen[seq]) this.repeated += 1;
    else {
      this.seen[seq] = 1;
      this.received += 1;
    }
    if (seq < this.#highest) this.reordered += 1;
    else this.#highest = seq;
  }
}

const sink = createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
let current: SinkRun | undefined;
sink.on('message', (msg) => current?.take(msg.readUInt32BE(0)));
await new Promise<void>((resolve) => sink.bind(0, '127.0.0.1', () => resolve()));
const sinkPort = sink.address().port;

function send(port: number, rate: number): Promise<{ sent: number; failed: number; seconds: number }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(import.meta.dirname, 'support', 'udpSender.ts'), String(port), String(rate), String(seconds)], { timeout: (seconds + 60) * 1000 }, (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout))));
  });
}

interface Row {
  path: string;
  rate: number;
  sent: number;
  /** What the sender reached: below `rate` when it could not keep up (the machine is shared). */
  sentPerSecond: number;
  deliveredPerSecond: number;
  loss: number;
  reordered: number;
}

/** A relay per rate (socat), or one port for every rate. */
type Relay = number | (() => Promise<{ port: number; done: () => void }>);

async function measure(path: string, relay: Relay): Promise<Row[]> {
  const rows: Row[] = [];
  for (const rate of rates) {
    current = new SinkRun(Math.round(rate * seconds));
    const opened = typeof relay === 'number' ? { port: relay, done: () => {} } : await relay();
    const result = await send(opened.port, rate);
    await new Promise((r) => setTimeout(r, 500)); // stragglers
    opened.done();
    const run = current;
    current = undefined;
    const row = { path, rate, sent: result.sent, sentPerSecond: Math.round(result.sent / result.seconds), deliveredPerSecond: Math.round(run.received / result.seconds), loss: 1 - run.received / result.sent, reordered: run.reordered / Math.max(1, run.received) };
    rows.push(row);
    process.stderr.write(`${path} ${rate}/s: delivered ${row.deliveredPerSecond}/s, loss ${(row.loss * 100).toFixed(3)}%, reordered ${(row.reordered * 100).toFixed(3)}%\n`);
    if (row.loss > 0.05) break; // past saturation: higher rates only lose more
  }
  return rows;
}

const rows: Row[] = [];
const stops: Array<() => unknown> = [];
try {
  if (wanted('direct')) rows.push(...(await measure('direct', sinkPort)));
  if (wanted('socat')) {
    if (!which('socat')) process.stderr.write('socat: not installed, skipped\n');
    else {
      // One socat per rate: UDP4-LISTEN relays for the first peer only (a relay per flow, as gatehouse has), no fork per
      // datagram; the same 4 MiB receive buffer as the tunnel client's local port.
      rows.push(...(await measure('socat', async () => {
        const port = await freePort();
        const socat: ChildProcess = spawn('socat', ['-T', '5', `UDP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,rcvbuf=4194304`, `UDP4:127.0.0.1:${sinkPort}`], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 300));
        return { port, done: () => void socat.kill() };
      })));
    }
  }
  const transports = (['connect', 'http2', 'websocket'] as const).filter(wanted);
  if (transports.length > 0 || wanted('published')) {
    const h = await startHarness({
      routes: `  - name: sink\n    protocols: [udp]\n    upstream: udp:127.0.0.1:${sinkPort}\n    policy: |\n      allow if user($u), protocol("udp");\n${publishedUdpRoute}`,
      extraTop: 'publish:\n  policy: |\n    allow if user($u);\nlimits:\n  udp:\n    packetsPerSecondPerFlow: 1000000\n    packetsPerSecondPerIdentity: 1000000\n    queuePackets: 4096\n',
    });
    stops.push(() => h.stop());
    const client = await h.pki.client('bench');
    const home = join(h.dir, 'home');
    mkdirSync(home, { recursive: true });
    const token = writeToken(h, join(home, 'token'), 'bench');
    for (const transport of transports) {
      const tunnel: TunnelProcess = await startTunnel(['-L', 'udp:127.0.0.1:0:sink', ...gatewayFlags(h, client, token, transport)], cleanEnv(home), 1, [cliNode, cli]);
      rows.push(...(await measure(`gatehouse ${{ connect: 'CONNECT-UDP', http2: 'CONNECT-UDP over HTTP/2', websocket: 'WebSocket' }[transport]}`, tunnel.ready[0]?.port as number)));
      await tunnel.stop();
    }
    if (wanted('published')) {
      // The sink published from this machine: the flow goes on over the publisher's connection to the gateway.
      const publisher = startPublisher([...publishFlags(h, client, token), `sink=udp:127.0.0.1:${sinkPort}`], cleanEnv(home));
      stops.push(() => publisher.stop());
      await publisher.waitForStderr(/published as bench/);
      const tunnel: TunnelProcess = await startTunnel(['-L', 'udp:127.0.0.1:0:sink.bench', ...gatewayFlags(h, client, token)], cleanEnv(home), 1, [cliNode, cli]);
      rows.push(...(await measure('gatehouse published (CONNECT-UDP)', tunnel.ready[0]?.port as number)));
      await tunnel.stop();
    }
    await new Promise((r) => setTimeout(r, 500));
    const closes = h.audit().filter((r) => r.event === 'udp.close');
    const dropped = closes.map((r) => r.dropped).filter(Boolean);
    process.stderr.write(`gateway: ${closes.length} udp.close records; drops recorded: ${JSON.stringify(dropped)}\n`);
  }
} finally {
  for (const stop of stops) await stop();
  sink.close();
}

const paths = [...new Set(rows.map((r) => r.path))];
/** Per path: the highest rate of the ladder delivered with under 0.1% loss (0: none). */
const highest = Object.fromEntries(paths.map((path) => [path, rows.filter((r) => r.path === path && r.loss < LOSS_GOAL).reduce((max, r) => Math.max(max, r.rate), 0)]));
if (args.json) writeFileSync(args.json, JSON.stringify({ seconds, rates, rows, highest }, null, 1));
const lines = ['| path | rate (datagrams/s of 1 KiB) | sent/s | delivered/s | loss | reordered |', '| --- | --- | --- | --- | --- | --- |'];
for (const r of rows) lines.push(`| ${r.path} | ${r.rate} | ${r.sentPerSecond} | ${r.deliveredPerSecond} | ${(r.loss * 100).toFixed(3)}% | ${(r.reordered * 100).toFixed(3)}% |`);
lines.push('', '| path | highest rate with under 0.1% loss |', '| --- | --- |');
for (const path of paths) {
  const best = highest[path] ?? 0;
  lines.push(`| ${path} | ${best > 0 ? `${best}/s (${((best * 1024) / 1e6).toFixed(1)} MB/s)` : `none of ${rates.join(', ')}`} |`);
}
process.stdout.write(`${seconds} s per rate, 1 KiB datagrams, loopback\n\n${lines.join('\n')}\n`);
