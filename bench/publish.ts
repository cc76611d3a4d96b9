// Published-service throughput: N MiB (default 256) up and down through `gatehouse tunnel -L` to a service
// published by `gatehouse publish`, beside the same through a direct `unix:` route and through `ssh -L`, same run.
// Usage: node bench/publish.ts [--size-mib 256] [--rounds 1] [--only direct,published,ssh]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarness } from '../test/support/gatewayHarness.ts';
import { cleanEnv, countHandler, download, gatewayFlags, keystreamSha256, listenUnix, sinkSourceRoutes, peakRssMiB, sourceHandler, startTunnel, upload, writeToken } from '../test/support/tunnelClient.ts';
import { freePort, startSshd, which } from '../test/support/localServices.ts';
import { publishedRoute, startPublisher } from '../test/support/publishPeers.ts';
import { sshForward } from './support/streamPeers.ts';

const { values: args } = parseArgs({ options: { 'size-mib': { type: 'string', default: '256' }, rounds: { type: 'string', default: '1' }, only: { type: 'string' } } });
const size = Number(args['size-mib']) * (1 << 20);
const rounds = Math.max(1, Number(args.rounds));
const only = args.only?.split(',');
const wanted = (key: string) => !only || only.includes(key);

const directRoutes = sinkSourceRoutes;
const publishTop = 'publish:\n  policy: |\n    allow if user($u);\n';

interface Samples {
  up: number[];
  down: number[];
  intact: boolean;
  peaks: string;
}
const results = new Map<string, Samples>();
const skipped: string[] = [];

process.stderr.write(`expected sha256 of ${size} bytes: computing...\n`);
const expected = keystreamSha256(size);
const mbps = (ms: number) => size / 1e6 / (ms / 1000);
const mib = (v: number | undefined) => (v === undefined ? '-' : `${v}`);

function record(path: string, up: { ms: number; bytes: number; sha256: string; sentSha256: string }, down: { ms: number; bytes: number; sha256: string }, peaks: string): void {
  const s = results.get(path) ?? { up: [], down: [], intact: true, peaks };
  s.up.push(mbps(up.ms));
  s.down.push(mbps(down.ms));
  s.intact &&= up.bytes === size && up.sha256 === expected && up.sentSha256 === expected && down.bytes === size && down.sha256 === expected;
  s.peaks = peaks;
  results.set(path, s);
  process.stderr.write(`${path}: up ${mbps(up.ms).toFixed(0)} MB/s, down ${mbps(down.ms).toFixed(0)} MB/s (${peaks})\n`);
}

/** Through a fresh gateway: a direct unix: route, or the published route with alice's publisher in front of the same sockets. */
async function throughGateway(kind: 'direct' | 'published'): Promise<void> {
  const h = await startHarness(kind === 'direct' ? { routes: directRoutes } : { routes: publishedRoute, extraTop: publishTop });
  const closers: Array<() => unknown> = [];
  try {
    const alice = await h.pki.client('alice');
    const home = join(h.dir, 'home');
    const tokenFile = writeToken(h, join(home, 'token'), 'alice');
    const sink = await listenUnix(join(h.dir, 'run', 'sink.sock'), countHandler);
    const source = await listenUnix(join(h.dir, 'run', 'source.sock'), sourceHandler);
    closers.push(() => sink.close(), () => source.close());
    let publisherPid: number | undefined;
    if (kind === 'published') {
      const publisher = startPublisher([...gatewayFlags(h, alice, tokenFile).slice(0, -2), `sink=unix:${join(h.dir, 'run', 'sink.sock')}`, `source=unix:${join(h.dir, 'run', 'source.sock')}`], cleanEnv(home));
      await publisher.waitForStderr(/published as alice/);
      publisherPid = publisher.proc.pid;
      closers.push(() => publisher.stop());
    }
    const [sinkName, sourceName] = kind === 'direct' ? ['sink', 'source'] : ['sink.alice', 'source.alice'];
    const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', `0:${sinkName}`, '-L', `0:${sourceName}`], cleanEnv(home), 2);
    closers.push(() => t.stop());
    const up = await upload(t.ready[0]?.port as number, size);
    const down = await download(t.ready[1]?.port as number, size);
    const peaks = `client ${mib(peakRssMiB(t.proc.pid))}, gateway ${mib(peakRssMiB(h.proc.pid))}${publisherPid ? `, publisher ${mib(peakRssMiB(publisherPid))}` : ''} MiB`;
    record(kind === 'direct' ? 'gatehouse tunnel -> direct unix: route' : 'gatehouse tunnel -> published service (gatehouse publish)', up, down, peaks);
  } finally {
    for (const close of closers.reverse()) await close();
    await h.stop();
  }
}

async function throughSsh(dir: string): Promise<void> {
  const missing = ['/usr/sbin/sshd', 'ssh', 'ssh-keygen'].filter((b) => !which(b));
  if (missing.length) return void skipped.push(`ssh -L: ${missing.join(', ')} not installed`);
  const sinkPath = join(dir, 'run', 'sink.sock');
  const sourcePath = join(dir, 'run', 'source.sock');
  const sink = await listenUnix(sinkPath, countHandler);
  const source = await listenUnix(sourcePath, sourceHandler);
  const sshd = await startSshd(join(dir, 'sshd'));
  try {
    const ports = { sink: await freePort(), source: await freePort() };
    const client = await sshForward(sshd, [{ port: ports.sink, socket: sinkPath }, { port: ports.source, socket: sourcePath }]);
    try {
      const up = await upload(ports.sink, size);
      const down = await download(ports.source, size);
      record('ssh -L to the UNIX sockets (sshd, default cipher)', up, down, `client ${mib(peakRssMiB(client.proc.pid))} MiB`);
    } finally {
      await client.stop();
    }
  } finally {
    await sshd.stop();
    sink.close();
    source.close();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-publish-'));
try {
  for (let round = 1; round <= rounds; round++) {
    process.stderr.write(`round ${round}/${rounds}\n`);
    if (wanted('ssh')) await throughSsh(join(dir, `ssh-${round}`));
    if (wanted('direct')) await throughGateway('direct');
    if (wanted('published')) await throughGateway('published');
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const ssh = [...results].find(([path]) => path.startsWith('ssh -L'))?.[1];
const ratio = (value: number, ref: number[] | undefined) => (ref ? (value / median(ref)).toFixed(2) : '-');
console.log(`\n${size / (1 << 20)} MiB each way (sha256 ${expected.slice(0, 16)}...), ${rounds > 1 ? `medians of ${rounds} rounds` : '1 round'}\n`);
for (const reason of [...new Set(skipped)]) console.log(`skipped ${reason}`);
console.log('| path | up MB/s | down MB/s | up vs ssh -L | down vs ssh -L | byte-identical | peak RSS |');
console.log('| --- | ---: | ---: | ---: | ---: | --- | --- |');
for (const [path, s] of results) {
  const [up, down] = [median(s.up), median(s.down)];
  console.log(`| ${path} | ${up.toFixed(0)} | ${down.toFixed(0)} | ${ratio(up, ssh?.up)} | ${ratio(down, ssh?.down)} | ${s.intact ? 'yes' : 'NO'} | ${s.peaks} |`);
}
process.exitCode = [...results.values()].every((s) => s.intact) ? 0 : 1;
