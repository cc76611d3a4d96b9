// Tunnel integrity and throughput: N MiB (default 1024) up and down through `gatehouse tunnel -L` on both
// transports and through its peers (Node relay, socat, ssh -L, nginx stream mTLS), sha256-checked; ratios to ssh -L.
// Usage: node bench/tunnel-integrity.ts [--size-mib 1024] [--rounds 1] [--only connect,websocket,ssh,socat,nginx,node]
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarness } from '../test/support/gatewayHarness.ts';
import { makeTestPki } from '../test/support/pki.ts';
import { cleanEnv, countHandler, download, gatewayFlags, keystreamSha256, listenUnix, peakRssMiB, sourceHandler, startTunnel, upload, writeToken } from '../test/support/tunnelClient.ts';
import { freePort, startSshd, which, type PeerProcess } from '../test/support/localServices.ts';
import { nginxStreamMtls, nginxStreamModule, socatForward, socatTlsClient, sshForward } from './support/streamPeers.ts';

const { values: args } = parseArgs({ options: { 'size-mib': { type: 'string', default: '1024' }, rounds: { type: 'string', default: '1' }, only: { type: 'string' } } });
const size = Number(args['size-mib']) * (1 << 20);
const rounds = Math.max(1, Number(args.rounds));
const only = args.only?.split(',');
const wanted = (key: string) => !only || only.includes(key);

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

/** Every round's figures for one path, in the order the table prints them. */
interface Samples {
  up: number[];
  down: number[];
  intact: boolean;
  auditBytes: string;
  clientPeakMiB?: number;
  gatewayPeakMiB?: number;
}
const results = new Map<string, Samples>();
const skipped: string[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

process.stderr.write(`expected sha256 of ${size} bytes: computing...\n`);
const expected = keystreamSha256(size);
const mbps = (ms: number) => size / 1e6 / (ms / 1000);

function record(path: string, up: { ms: number; bytes: number; sha256: string }, down: { ms: number; bytes: number; sha256: string }, extra: Partial<Samples> = {}): void {
  const s = results.get(path) ?? { up: [], down: [], intact: true, auditBytes: '-' };
  s.up.push(mbps(up.ms));
  s.down.push(mbps(down.ms));
  s.intact &&= up.bytes === size && up.sha256 === expected && down.bytes === size && down.sha256 === expected && extra.intact !== false;
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
  const up = await upload(peer.sinkPort, size);
  const down = await download(peer.sourcePort, size);
  record(peer.path, up, down, { intact: up.sentSha256 === expected, clientPeakMiB: peakRssMiB(peer.client?.proc.pid) });
}

async function throughTunnel(transport: 'connect' | 'websocket'): Promise<void> {
  // A fresh gateway per transport and round, so its peak memory belongs to this run alone.
  const h = await startHarness({ routes });
  try {
    const alice = await h.pki.client('alice');
    const tokenFile = writeToken(h, join(h.dir, 'home', 'token'), 'alice');
    const sink = await listenUnix(join(h.dir, 'run', 'sink.sock'), countHandler);
    const source = await listenUnix(join(h.dir, 'run', 'source.sock'), sourceHandler);
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile, transport), '-L', '0:sink', '-L', '0:source'], cleanEnv(join(h.dir, 'home')), 2);
    const up = await upload(t.ready[0]?.port as number, size);
    const down = await download(t.ready[1]?.port as number, size);
    const clientPeakMiB = peakRssMiB(t.proc.pid);
    const gatewayPeakMiB = peakRssMiB(h.proc.pid);
    await t.stop();
    await new Promise((r) => setTimeout(r, 300));
    const closes = h.audit().filter((r) => r.event === 'tunnel.close');
    const sinkClose = closes.find((r) => r.route === 'sink');
    const sourceClose = closes.find((r) => r.route === 'source');
    const exact = sinkClose?.bytesIn === size && sourceClose?.bytesOut === size && up.sentSha256 === expected;
    const auditBytes = `up: in ${sinkClose?.bytesIn} out ${sinkClose?.bytesOut}; down: in ${sourceClose?.bytesIn} out ${sourceClose?.bytesOut}`;
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
console.log(`\n${size / (1 << 20)} MiB each way (sha256 ${expected.slice(0, 16)}...), ${rounds > 1 ? `medians of ${rounds} rounds` : '1 round'}\n`);
for (const reason of skipped) console.log(`skipped ${reason}`);
console.log('| path | up MB/s | down MB/s | up vs ssh -L | down vs ssh -L | byte-identical | gateway close records | client peak RSS | gateway peak RSS |');
console.log('| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |');
for (const [path, s] of results) {
  const [up, down] = [median(s.up), median(s.down)];
  const mib = (v: number | undefined) => (v === undefined ? '-' : `${v} MiB`);
  console.log(`| ${path} | ${up.toFixed(0)} | ${down.toFixed(0)} | ${ratio(up, ssh?.up)} | ${ratio(down, ssh?.down)} | ${s.intact ? 'yes' : 'NO'} | ${s.auditBytes} | ${mib(s.clientPeakMiB)} | ${mib(s.gatewayPeakMiB)} |`);
}
process.exitCode = [...results.values()].every((s) => s.intact) ? 0 : 1;
