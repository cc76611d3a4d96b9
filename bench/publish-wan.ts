// Published tunnels over a WAN: one download through `gatehouse tunnel -L` to a published service whose
// publisher reaches the gateway through a userspace delay proxy (every chunk held RTT/2 each way), beside
// `ssh -L` through the same proxy to the same socket, at several round-trip times. Single stream, MB/s.
// Usage: node bench/publish-wan.ts [--rtt-ms 0,10,50,100] [--seconds 8] [--only published,ssh]
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarness, type Harness } from '../test/support/gatewayHarness.ts';
import { tcpRelay } from '../test/support/faultPeers.ts';
import { freePort, startSshd, which } from '../test/support/localServices.ts';
import { publishedRoute, startPublisher } from '../test/support/publishPeers.ts';
import { cleanEnv, gatewayFlags, listenUnix, sourceHandler, startTunnel, writeToken } from '../test/support/tunnelClient.ts';
import { sshForward } from './support/streamPeers.ts';

const { values: args } = parseArgs({ options: { 'rtt-ms': { type: 'string', default: '0,10,50,100' }, seconds: { type: 'string', default: '8' }, only: { type: 'string' } } });
const rtts = (args['rtt-ms'] as string).split(',').map(Number);
const seconds = Number(args.seconds);
const only = args.only?.split(',');
const wanted = (key: string) => !only || only.includes(key);

/**
 * Downloads from a source service through local port `port` for `seconds` (asking for far more than that),
 * and returns MB/s over the last three quarters (the first quarter is the windows' ramp-up).
 */
function downloadFor(port: number): Promise<{ mbps: number; rampMbps: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let bytes = 0;
    const started = performance.now();
    let atQuarter: { bytes: number; at: number } | undefined;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.on('error', reject);
    const quarter = setTimeout(() => (atQuarter = { bytes, at: performance.now() }), (seconds * 1000) / 4);
    setTimeout(() => {
      clearTimeout(quarter);
      const now = performance.now();
      const from = atQuarter ?? { bytes: 0, at: started };
      socket.destroy();
      resolve({ mbps: (bytes - from.bytes) / 1e6 / ((now - from.at) / 1000), rampMbps: from.bytes / 1e6 / ((from.at - started) / 1000) });
    }, seconds * 1000);
    socket.write(`${2 ** 40}\n`);
  });
}

const rows: Array<{ rtt: number; path: string; mbps: number; rampMbps: number }> = [];

async function published(h: Harness, source: string, rtt: number): Promise<void> {
  const relay = await tcpRelay(h.port, rtt / 2);
  const alice = await h.pki.client('alice');
  const home = join(h.dir, `home-${rtt}`);
  const tokenFile = writeToken(h, join(home, 'token'), 'alice');
  const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2);
  const publisher = startPublisher([...flags.map((f) => f.replace(`:${h.port}`, `:${relay.port}`)), `source=unix:${source}`], cleanEnv(home));
  try {
    await publisher.waitForStderr(/published as alice/, 30_000);
    const tunnel = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:source.alice'], cleanEnv(home));
    try {
      const result = await downloadFor(tunnel.ready[0]?.port as number);
      rows.push({ rtt, path: 'gatehouse tunnel -> published service', ...result });
    } finally {
      await tunnel.stop();
    }
  } finally {
    await publisher.stop();
    await relay.close();
  }
}

async function ssh(dir: string, source: string, rtt: number): Promise<void> {
  const sshd = await startSshd(join(dir, `sshd-${rtt}`));
  const relay = await tcpRelay(sshd.port, rtt / 2);
  try {
    const port = await freePort();
    const client = await sshForward({ ...sshd, port: relay.port }, [{ port, socket: source }]);
    try {
      rows.push({ rtt, path: 'ssh -L (default cipher)', ...(await downloadFor(port)) });
    } finally {
      await client.stop();
    }
  } finally {
    await relay.close();
    await sshd.stop();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-wan-'));
const h = await startHarness({ routes: publishedRoute, extraTop: 'publish:\n  policy: |\n    allow if user($u);\n' });
const sourcePath = join(dir, 'source.sock');
const source = await listenUnix(sourcePath, sourceHandler);
const haveSsh = ['/usr/sbin/sshd', 'ssh', 'ssh-keygen'].every((b) => which(b));
try {
  for (const rtt of rtts) {
    process.stderr.write(`round trip ${rtt} ms\n`);
    if (wanted('published')) await published(h, sourcePath, rtt);
    if (wanted('ssh') && haveSsh) await ssh(dir, sourcePath, rtt);
    for (const r of rows.filter((r) => r.rtt === rtt)) process.stderr.write(`  ${r.path}: ${r.mbps.toFixed(1)} MB/s\n`);
  }
} finally {
  source.close();
  await h.stop();
  rmSync(dir, { recursive: true, force: true });
}

if (!haveSsh && wanted('ssh')) console.log('skipped ssh -L: sshd, ssh or ssh-keygen not installed');
console.log(`\nOne download, ${seconds} s per cell, MB/s after the first quarter (first-quarter MB/s in brackets); the delay proxy sits between the publisher (or ssh) and the gateway (or sshd)\n`);
console.log(`| round trip | ${[...new Set(rows.map((r) => r.path))].join(' | ')} | published / ssh |`);
console.log(`| ---: | ${[...new Set(rows.map((r) => r.path))].map(() => '---:').join(' | ')} | ---: |`);
for (const rtt of rtts) {
  const cells = rows.filter((r) => r.rtt === rtt);
  const pub = cells.find((r) => r.path.startsWith('gatehouse'));
  const sshCell = cells.find((r) => r.path.startsWith('ssh'));
  const ratio = pub && sshCell ? (pub.mbps / sshCell.mbps).toFixed(2) : '-';
  console.log(`| ${rtt} ms | ${cells.map((r) => `${r.mbps.toFixed(1)} (${r.rampMbps.toFixed(1)})`).join(' | ')} | ${ratio} |`);
}
