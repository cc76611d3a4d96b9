// Tunnel integrity and throughput: N MiB (default 1024) up and down through `gatehouse tunnel -L` on both
// transports and through its peers (Node relay, socat, ssh -L, nginx stream mTLS), sha256-checked; ratios to ssh -L.
// Usage: node bench/tunnel-integrity.ts [--size-mib 1024] [--rounds 1] [--parallel 1] [--json FILE] [--only connect,websocket,ssh,socat,nginx,node]
//   [--client bundle|sources|package|sea]
// The client runs as laptop users run it: the bundle of `npm run build:client` (rebuilt here from the sources
// first, so the figures are the checkout's), with the Node flags of its first line; --client picks another form.
// --parallel N moves the same total as N concurrent streams of size/N each way (aggregate MB/s).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarness } from '../test/support/gatewayHarness.ts';
import { makeTestPki } from '../test/support/pki.ts';
import { cleanEnv, countHandler, download, gatewayFlags, keystreamSha256, listenUnix, sinkSourceRoutes, peakRssMiB, sourceHandler, startTunnel, upload, writeToken } from '../test/support/tunnelClient.ts';
import { freePort, startSshd, which, type PeerProcess } from '../test/support/localServices.ts';
import { nginxStreamMtls, nginxStreamModule, socatForward, socatTlsClient, sshForward } from './support/streamPeers.ts';
import { clientCommand, type ClientForm } from './support/tunnelClientForm.ts';
import { buildClientBundle } from '../build/clientBundle.ts';
import { treeCpuSeconds } from './support/procStats.ts';

const { values: args } = parseArgs({ options: { 'size-mib': { type: 'string', default: '1024' }, rounds: { type: 'string', default: '1' }, parallel: { type: 'string', default: '1' }, json: { type: 'string' }, only: { type: 'string' }, client: { type: 'string', default: 'bundle' } } });
const clientForm = args.client as ClientForm;
if (clientForm === 'bundle') await buildClientBundle();
const parallel = Math.max(1, Number(args.parallel));
// Each stream carries size / parallel bytes (rounded to 64 KiB chunks), so the total stays the same.
const size = Math.floor((Number(args['size-mib']) * (1 << 20)) / parallel / 65536) * 65536 * parallel;
const streamSize = size / parallel;
const rounds = Math.max(1, Number(args.rounds));
const only = args.only?.split(',');
const wanted = (key: string) => !only || only.includes(key);

const routes = sinkSourceRoutes;

/** Every round's figures for one path, in the order the table prints them. */
interface Samples {
  up: number[];
  down: number[];
  intact: boolean;
  auditBytes: string;
  clientPeakMiB?: number;
  gatewayPeakMiB?: number;
  /** CPU of the tunnel client (gatehouse tunnel, ssh) per MB moved, ms: the figure a busy machine hardly moves. */
  clientCpuUp: number[];
  clientCpuDown: number[];
}
const results = new Map<string, Samples>();
const skipped: string[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

process.stderr.write(`expected sha256 of ${streamSize} bytes: computing...\n`);
const expected = keystreamSha256(streamSize);
const mbps = (ms: number) => size / 1e6 / (ms / 1000);

interface Moved {
  ms: number;
  intact: boolean;
  /** CPU the client process used, ms per MB. */
  clientCpuMsPerMB?: number;
}

/** Runs `move` and adds the CPU that `clientPid` used meanwhile, per MB of `size`. */
async function withClientCpu(clientPid: number | undefined, move: () => Promise<Moved>): Promise<Moved> {
  const c0 = clientPid ? treeCpuSeconds(clientPid) : 0;
  const moved = await move();
  return clientPid ? { ...moved, clientCpuMsPerMB: ((treeCpuSeconds(clientPid) - c0) * 1000) / (size / 1e6) } : moved;
}

/** `parallel` streams at once, each streamSize bytes; intact when every stream's bytes and hash match. */
async function uploads(port: number): Promise<Moved> {
  const t0 = performance.now();
  const all = await Promise.all(Array.from({ length: parallel }, () => upload(port, streamSize)));
  return { ms: performance.now() - t0, intact: all.every((u) => u.bytes === streamSize && u.sha256 === expected && u.sentSha256 === expected) };
}

async function downloads(port: number): Promise<Moved> {
  const t0 = performance.now();
  const all = await Promise.all(Array.from({ length: parallel }, () => download(port, streamSize)));
  return { ms: performance.now() - t0, intact: all.every((d) => d.bytes === streamSize && d.sha256 === expected) };
}

function record(path: string, up: Moved, down: Moved, extra: Partial<Samples> = {}): void {
  const s = results.get(path) ?? { up: [], down: [], intact: true, auditBytes: '-', clientCpuUp: [], clientCpuDown: [] };
  s.up.push(mbps(up.ms));
  s.down.push(mbps(down.ms));
  if (up.clientCpuMsPerMB !== undefined) s.clientCpuUp.push(up.clientCpuMsPerMB);
  if (down.clientCpuMsPerMB !== undefined) s.clientCpuDown.push(down.clientCpuMsPerMB);
  s.intact &&= up.intact && down.intact && extra.intact !== false;
  if (extra.auditBytes) s.auditBytes = extra.auditBytes;
  s.clientPeakMiB = Math.max(s.clientPeakMiB ?? 0, extra.clientPeakMiB ?? 0) || undefined;
  s.gatewayPeakMiB = Math.max(s.gatewayPeakMiB ?? 0, extra.gatewayPeakMiB ?? 0) || undefined;
  results.set(path, s);
  process.stderr.write(`${path}: up ${mbps(up.ms).toFixed(0)} MB/s, down ${mbps(down.ms).toFixed(0)} MB/s\n`);
}

/** A local TCP port that pipes to the UNIX socket in this process: the no-TLS Node baseline. */
async function nodeRelay(socket: string): Promise<{ port: number; server: Server }> {
  const server = createServer({ allowHalfOpen: true }, (local) => {
    const upstream = connect(socket);
    local.pipe(upstream).on('error', () => {});
    upstream.pipe(local).on('error', () => {});
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { port: (server.address() as { port: number }).port, server };
}

interface Peer {
  path: string;
  sinkPort: number;
  sourcePort: number;
  client?: PeerProcess;
}

/** Starts every installed peer against the sink and source sockets in `dir`; notes the skipped ones. */
async function startPeers(dir: string): Promise<Peer[]> {
  const sink = join(dir, 'run', 'sink.sock');
  const source = join(dir, 'run', 'source.sock');
  const peers: Peer[] = [];
  const ports = async () => ({ sinkPort: await freePort(), sourcePort: await freePort() });
  if (wanted('node')) {
    const [a, b] = [await nodeRelay(sink), await nodeRelay(source)];
    cleanups.push(() => void a.server.close(), () => void b.server.close());
    peers.push({ path: 'Node relay, no TLS', sinkPort: a.port, sourcePort: b.port });
  }
  if (wanted('socat')) {
    if (!which('socat')) skipped.push('socat: not installed');
    else {
      const p = await ports();
      for (const [port, socket] of [[p.sinkPort, sink], [p.sourcePort, source]] as const) cleanups.push((await socatForward(port, `UNIX-CONNECT:${socket}`)).stop);
      peers.push({ path: 'socat TCP -> UNIX, no TLS', ...p });
    }
  }
  if (wanted('ssh')) {
    const missing = ['/usr/sbin/sshd', 'ssh', 'ssh-keygen'].filter((b) => !which(b));
    if (missing.length) skipped.push(`ssh -L: ${missing.join(', ')} not installed`);
    else {
      const sshd = await startSshd(join(dir, 'sshd'));
      cleanups.push(sshd.stop);
      const p = await ports();
      const client = await sshForward(sshd, [{ port: p.sinkPort, socket: sink }, { port: p.sourcePort, socket: source }]);
      cleanups.push(client.stop);
      peers.push({ path: 'ssh -L (sshd, default cipher)', ...p, client });
    }
  }
  if (wanted('nginx')) {
    const module = nginxStreamModule();
    if (!which('socat')) skipped.push('nginx stream mTLS: socat (its TLS client) not installed');
    else if (module === undefined) skipped.push('nginx stream mTLS: nginx or its stream module not installed');
    else {
      const pki = await makeTestPki(join(dir, 'pki'));
      const client = await pki.client('bench');
      const tls = { caCert: pki.caCertPath, serverCert: pki.serverCertPath, serverKey: pki.serverKeyPath, clientCert: client.certPath, clientKey: client.keyPath };
      const tlsPorts = await ports();
      cleanups.push((await nginxStreamMtls(join(dir, 'nginx'), module, tls, [{ port: tlsPorts.sinkPort, socket: sink }, { port: tlsPorts.sourcePort, socket: source }])).stop);
      const p = await ports();
      cleanups.push((await socatForward(p.sinkPort, socatTlsClient(tlsPorts.sinkPort, tls))).stop);
      cleanups.push((await socatForward(p.sourcePort, socatTlsClient(tlsPorts.sourcePort, tls))).stop);
      peers.push({ path: 'nginx stream mTLS (1 worker) + socat TLS client', ...p });
    }
  }
  return peers;
}

async function runPeer(peer: Peer): Promise<void> {
  const up = await withClientCpu(peer.client?.proc.pid, () => uploads(peer.sinkPort));
  const down = await withClientCpu(peer.client?.proc.pid, () => downloads(peer.sourcePort));
  record(peer.path, up, down, { clientPeakMiB: peakRssMiB(peer.client?.proc.pid) });
}

async function throughTunnel(transport: 'connect' | 'websocket'): Promise<void> {
  // A fresh gateway per transport and round, so its peak memory belongs to this run alone.
  const h = await startHarness({ routes, extraTop: `limits:\n  tunnelsPerIdentity: ${Math.max(64, parallel * 4)}\n` });
  try {
    const alice = await h.pki.client('alice');
    const tokenFile = writeToken(h, join(h.dir, 'home', 'token'), 'alice');
    const sink = await listenUnix(join(h.dir, 'run', 'sink.sock'), countHandler);
    const source = await listenUnix(join(h.dir, 'run', 'source.sock'), sourceHandler);
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, transport), '-L', '0:sink', '-L', '0:source'], cleanEnv(join(h.dir, 'home')), 2, clientCommand(clientForm));
    const up = await withClientCpu(t.proc.pid, () => uploads(t.ready[0]?.port as number));
    const down = await withClientCpu(t.proc.pid, () => downloads(t.ready[1]?.port as number));
    const clientPeakMiB = peakRssMiB(t.proc.pid);
    const gatewayPeakMiB = peakRssMiB(h.proc.pid);
    await t.stop();
    await new Promise((r) => setTimeout(r, 300));
    const closes = h.audit().filter((r) => r.event === 'tunnel.close');
    const sum = (route: string, key: 'bytesIn' | 'bytesOut') => closes.filter((r) => r.route === route).reduce((n, r) => n + (r[key] ?? 0), 0);
    const exact = sum('sink', 'bytesIn') === size && sum('source', 'bytesOut') === size && closes.length === 2 * parallel;
    const auditBytes = `up: in ${sum('sink', 'bytesIn')} out ${sum('sink', 'bytesOut')}; down: in ${sum('source', 'bytesIn')} out ${sum('source', 'bytesOut')}`;
    record(`gatehouse tunnel (${transport})`, up, down, { intact: exact, auditBytes, clientPeakMiB, gatewayPeakMiB });
    sink.close();
    source.close();
  } finally {
    await h.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function cleanup(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-tunnel-'));
try {
  const sink = await listenUnix(join(dir, 'run', 'sink.sock'), countHandler);
  const source = await listenUnix(join(dir, 'run', 'source.sock'), sourceHandler);
  cleanups.push(() => void sink.close(), () => void source.close());
  const peers = await startPeers(dir);
  for (const reason of skipped) process.stderr.write(`skipped ${reason}\n`);
  for (let round = 1; round <= rounds; round++) {
    process.stderr.write(`round ${round}/${rounds}\n`);
    for (const peer of peers) await runPeer(peer);
    for (const transport of ['connect', 'websocket'] as const) if (wanted(transport)) await throughTunnel(transport);
  }
} finally {
  await cleanup();
  rmSync(dir, { recursive: true, force: true });
}

const ssh = [...results].find(([path]) => path.startsWith('ssh -L'))?.[1];
const ratio = (value: number, ref: number[] | undefined) => (ref ? (value / median(ref)).toFixed(2) : '-');
console.log(`\n${size / (1 << 20)} MiB each way${parallel > 1 ? ` as ${parallel} parallel streams` : ''} (sha256 ${expected.slice(0, 16)}...), ${rounds > 1 ? `medians of ${rounds} rounds` : '1 round'}; gatehouse tunnel run as: ${clientForm}\n`);
for (const reason of skipped) console.log(`skipped ${reason}`);
console.log('| path | up MB/s | down MB/s | up vs ssh -L | down vs ssh -L | byte-identical | gateway close records | client peak RSS | client CPU up / down, ms per MB | gateway peak RSS |');
console.log('| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |');
for (const [path, s] of results) {
  const [up, down] = [median(s.up), median(s.down)];
  const mib = (v: number | undefined) => (v === undefined ? '-' : `${v} MiB`);
  const cpu = s.clientCpuUp.length > 0 ? `${median(s.clientCpuUp).toFixed(2)} / ${median(s.clientCpuDown).toFixed(2)}` : '-';
  console.log(`| ${path} | ${up.toFixed(0)} | ${down.toFixed(0)} | ${ratio(up, ssh?.up)} | ${ratio(down, ssh?.down)} | ${s.intact ? 'yes' : 'NO'} | ${s.auditBytes} | ${mib(s.clientPeakMiB)} | ${cpu} | ${mib(s.gatewayPeakMiB)} |`);
}
if (args.json) writeFileSync(args.json, JSON.stringify({ sizeMiB: size / (1 << 20), parallel, rounds, clientForm, skipped, paths: Object.fromEntries([...results].map(([path, s]) => [path, { ...s, upMedian: median(s.up), downMedian: median(s.down), ...(s.clientCpuUp.length > 0 && { clientCpuUpMsPerMB: median(s.clientCpuUp), clientCpuDownMsPerMB: median(s.clientCpuDown) }) }])) }, null, 2));
process.exitCode = [...results.values()].every((s) => s.intact) ? 0 : 1;
