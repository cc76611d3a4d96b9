// Profiles the tunnel client, `gatehouse tunnel -L`, as users run it: one bulk upload then one download
// (--mib each) through a real gateway, client CPU time per MB, RSS idle and peak, and optionally --cpu-prof.
// Usage: node bench/profile-client.ts [--mib 512] [--form bundle|sources|package|sea] [--profile] [--node-flags '--trace-gc'] [--top 25]
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarness } from '../test/support/gatewayHarness.ts';
import { cleanEnv, countHandler, download, gatewayFlags, keystreamSha256, listenUnix, sinkSourceRoutes, peakRssMiB, sourceHandler, startTunnel, upload, writeToken } from '../test/support/tunnelClient.ts';
import { summarize, type Profile } from './support/cpuProfile.ts';
import { clientCommand, type ClientForm } from './support/tunnelClientForm.ts';
import { treeCpuSeconds } from './support/procStats.ts';
import { buildClientBundle } from '../build/clientBundle.ts';

const { values: args } = parseArgs({ options: { mib: { type: 'string', default: '512' }, form: { type: 'string', default: 'bundle' }, profile: { type: 'boolean', default: false }, 'node-flags': { type: 'string', default: '' }, top: { type: 'string', default: '25' } } });
const bytes = Number(args.mib) * (1 << 20);
const form = args.form as ClientForm;
if (form === 'bundle') await buildClientBundle();

const rssMiB = (pid: number) => Math.round(Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024);

const routes = sinkSourceRoutes;
const expected = keystreamSha256(bytes);
const h = await startHarness({ routes });
try {
  const alice = await h.pki.client('alice');
  const tokenFile = writeToken(h, join(h.dir, 'home', 'token'), 'alice');
  const sink = await listenUnix(join(h.dir, 'run', 'sink.sock'), countHandler);
  const source = await listenUnix(join(h.dir, 'run', 'source.sock'), sourceHandler);
  const profDir = join(h.dir, 'client-profile');
  mkdirSync(profDir);
  const nodeFlags = args['node-flags'].split(' ').filter((f) => f !== '');
  const command = clientCommand(form, [...nodeFlags, ...(args.profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [])]);
  const t = await startTunnel([...gatewayFlags(h, alice, tokenFile), '-L', '0:sink', '-L', '0:source'], cleanEnv(join(h.dir, 'home')), 2, command);
  const pid = t.proc.pid as number;
  await new Promise((r) => setTimeout(r, 500));
  const idle = rssMiB(pid);
  const cpu0 = treeCpuSeconds(pid);
  const up = await upload(t.ready[0]?.port as number, bytes);
  const cpu1 = treeCpuSeconds(pid);
  const peakUp = peakRssMiB(pid);
  const down = await download(t.ready[1]?.port as number, bytes);
  const cpu2 = treeCpuSeconds(pid);
  const peak = peakRssMiB(pid);
  const intact = up.sha256 === expected && down.sha256 === expected;
  await t.stop('SIGINT');
  sink.close();
  source.close();
  const mb = bytes / 1e6;
  process.stdout.write(
    `${form}: ${args.mib} MiB each way: up ${(mb / (up.ms / 1000)).toFixed(0)} MB/s (client CPU ${((1e3 * (cpu1 - cpu0)) / mb).toFixed(2)} ms/MB), ` +
      `down ${(mb / (down.ms / 1000)).toFixed(0)} MB/s (client CPU ${((1e3 * (cpu2 - cpu1)) / mb).toFixed(2)} ms/MB); client RSS idle ${idle} MiB, peak ${peakUp} MiB after the upload, ${peak} MiB after both; ${intact ? 'intact' : 'CORRUPT'}\n`,
  );
  if (args.profile) {
    await new Promise((r) => setTimeout(r, 500));
    const files = readdirSync(profDir).map((f) => join(profDir, f));
    if (files[0]) process.stdout.write(`\n${summarize(JSON.parse(readFileSync(files[0], 'utf8')) as Profile, Number(args.top))}\n`);
  }
  if (!intact) process.exitCode = 1;
} finally {
  await h.stop();
}
