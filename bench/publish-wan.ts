// Published services over a WAN: single-stream MB/s through `gatehouse tunnel -L` to a service published by
// `gatehouse publish` whose connection to the gateway crosses a delay proxy, beside `ssh -L` through the same proxy.
// Usage: node bench/publish-wan.ts [--size-mib 256] [--rtt 0,10,50,100] [--only published,ssh] [--direction down,up] [--rounds 1]
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarness, type Harness } from '../test/support/gatewayHarness.ts';
import { cleanEnv, countHandler, download, gatewayFlags, keystreamSha256, listenUnix, sourceHandler, startTunnel, upload, writeToken } from '../test/support/tunnelClient.ts';
import { freePort, startSshd, which } from '../test/support/localServices.ts';
import { publishedRoute, startPublisher } from '../test/support/publishPeers.ts';
import { startDelayProxy } from '../test/support/delayProxy.ts';
import { sshForward } from './support/streamPeers.ts';

const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    rtt: { type: 'string', default: '0,10,50,100' },
    only: { type: 'string', default: 'published,ssh' },
    direction: { type: 'string', default: 'down' },
    // Each round runs every RTT, the two paths in turn: on a shared machine the medians are what to compare.
    rounds: { type: 'string', default: '1' },
  },
});
const size = Number(args['size-mib']) * (1 << 20);
const rtts = args.rtt.split(',').map(Number);
const paths = args.only.split(',');
const directions = args.direction.split(',') as Array<'down' | 'up'>;
const rounds = Math.max(1, Number(args.rounds));
const PUBLISHED = 'gatehouse tunnel -L -> published service';
const SSH = 'ssh -L -> UNIX socket';
const publishTop = 'publish:\n  policy: |\n    allow if user($u);\n';

process.stderr.write(`expected sha256 of ${size} bytes: computing...\n`);
const expected = keystreamSha256(size);
/** path -> "rtt direction" -> MB/s of each round, undefined when the bytes were not intact. */
const table = new Map<string, Map<string, Array<number | undefined>>>();
const skipped: string[] = [];

/** Runs the transfers of one direction set through ports leading to the sink (up) and the source (down). */
async function transfer(path: string, rtt: number, ports: { sink: number; source: number }): Promise<void> {
  const row = table.get(path) ?? new Map<string, Array<number | undefined>>();
  table.set(path, row);
  for (const direction of directions) {
    const result = direction === 'down' ? await download(ports.source, size) : await upload(ports.sink, size);
    const intact = result.bytes === size && result.sha256 === expected;
    const mbps = size / 1e6 / (result.ms / 1000);
    const cell = `${rtt} ${direction}`;
    row.set(cell, [...(row.get(cell) ?? []), intact ? mbps : undefined]);
    process.stderr.write(`${path} rtt ${rtt} ms ${direction}: ${mbps.toFixed(1)} MB/s${intact ? '' : ` NOT INTACT (${result.bytes} bytes)`}\n`);
  }
}

async function published(h: Harness, rtt: number): Promise<void> {
  const alice = await h.pki.client('alice');
  const home = join(h.dir, 'home');
  const tokenFile = writeToken(h, join(home, 'token'), 'alice');
  const run = join(h.dir, 'run');
  // Only the publisher's connection crosses the WAN: the tunnel client sits next to the gateway.
  const wan = await startDelayProxy({ rttMs: rtt, targetPort: h.port });
  const flags = gatewayFlags(h, alice, tokenFile).slice(0, -2).map((f) => f.replace(`localhost:${h.port}`, `localhost:${wan.port}`));
  const publisher = startPublisher([...flags, `sink=unix:${join(run, 'sink.sock')}`, `source=unix:${join(run, 'source.sock')}`], cleanEnv(home));
  try {
    await publisher.waitForStderr(/published as alice/);
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:sink.alice', '-L', '0:source.alice'], cleanEnv(home), 2);
    try {
      await transfer(PUBLISHED, rtt, { sink: t.ready[0]?.port as number, source: t.ready[1]?.port as number });
    } finally {
      await t.stop();
    }
  } finally {
    await publisher.stop();
    await wan.close();
  }
}

async function ssh(dir: string, rtt: number, round: number): Promise<void> {
  const missing = ['/usr/sbin/sshd', 'ssh', 'ssh-keygen'].filter((b) => !which(b));
  if (missing.length) return void skipped.push(`ssh -L: ${missing.join(', ')} not installed`);
  const sshd = await startSshd(join(dir, `sshd-${rtt}-${round}`));
  const wan = await startDelayProxy({ rttMs: rtt, targetPort: sshd.port });
  try {
    const ports = { sink: await freePort(), source: await freePort() };
    const client = await sshForward({ ...sshd, port: wan.port }, [
      { port: ports.sink, socket: join(dir, 'run', 'sink.sock') },
      { port: ports.source, socket: join(dir, 'run', 'source.sock') },
    ]);
    try {
      await transfer(SSH, rtt, ports);
    } finally {
      await client.stop();
    }
  } finally {
    await wan.close();
    await sshd.stop();
  }
}

const h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
const sshDir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-wan-'));
const services = [];
try {
  mkdirSync(join(sshDir, 'run'));
  for (const dir of [join(h.dir, 'run'), join(sshDir, 'run')]) {
    services.push(await listenUnix(join(dir, 'sink.sock'), countHandler), await listenUnix(join(dir, 'source.sock'), sourceHandler));
  }
  for (let round = 1; round <= rounds; round += 1) {
    if (rounds > 1) process.stderr.write(`round ${round} of ${rounds}, load average ${loadavg()[0]?.toFixed(1)}\n`);
    for (const rtt of rtts) {
      if (paths.includes('published')) await published(h, rtt);
      if (paths.includes('ssh')) await ssh(sshDir, rtt, round);
    }
  }
} finally {
  for (const s of services) s.close();
  await h.stop();
  rmSync(sshDir, { recursive: true, force: true });
}

/** The middle value (the mean of the middle two for an even count); undefined if any round was not intact. */
function median(values: Array<number | undefined>): number | undefined {
  if (values.length === 0 || values.some((v) => v === undefined)) return undefined;
  const sorted = (values as number[]).toSorted((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const [load1, load5] = loadavg();
console.log(`\n${size / (1 << 20)} MiB per transfer, one stream, MB/s, median of ${rounds} round(s) (sha256-checked; "-" = not intact); load average now ${load1?.toFixed(1)} (5 min ${load5?.toFixed(1)})\n`);
for (const reason of skipped) console.log(`skipped ${reason}`);
const columns = rtts.flatMap((rtt) => directions.map((d) => `${rtt} ${d}`));
const medians = new Map([...table].map(([path, row]) => [path, columns.map((c) => median(row.get(c) ?? []))]));
const show = (v: number | undefined, digits = 1) => (v === undefined ? '-' : v.toFixed(digits));
console.log(`| path | ${columns.map((c) => c.replace(' ', ' ms ')).join(' | ')} |`);
console.log(`| --- | ${columns.map(() => '---:').join(' | ')} |`);
for (const [path, cells] of medians) console.log(`| ${path} | ${cells.map((v) => show(v)).join(' | ')} |`);
const [publishedCells, sshCells] = [medians.get(PUBLISHED), medians.get(SSH)];
if (publishedCells && sshCells) {
  console.log(`| published vs ssh -L | ${publishedCells.map((v, i) => show(v !== undefined && sshCells[i] !== undefined ? v / (sshCells[i] as number) : undefined, 2)).join(' | ')} |`);
}
process.exitCode = [...table.values()].every((row) => [...row.values()].every((runs) => runs.every((v) => v !== undefined))) ? 0 : 1;
