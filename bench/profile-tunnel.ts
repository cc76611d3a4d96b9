// Profiles gatehouse's CONNECT tunnel path: `--cpu-prof` on a real `gatehouse serve` (1 process), one
// tunnel up then one down (--mib each) from a plain TLS client in this process, then self time by module.
// Usage: node bench/profile-tunnel.ts [--mib 1024] [--top 25]
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { summarize, type Profile } from './support/cpuProfile.ts';
import { createBenchEnv, startServer, type BenchEnv } from './support/benchEnv.ts';
import { treeRssMiB } from './support/procStats.ts';

const { values: args } = parseArgs({ options: { mib: { type: 'string', default: '1024' }, top: { type: 'string', default: '25' } } });
const bytes = Number(args.mib) * (1 << 20);

/** A CONNECT tunnel to the holder (sink and source) through the gateway. */
function tunnel(env: BenchEnv, url: string): Promise<TLSSocket> {
  return new Promise((ok, fail) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(new URL(url).port), servername: 'localhost', cert: readFileSync(env.tls.cert), key: readFileSync(env.tls.key), ca: readFileSync(env.tls.ca) });
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      socket.write(`CONNECT hold:1 HTTP/1.1\r\nHost: hold:1\r\nProxy-Authorization: Bearer ${env.token}\r\n\r\n`);
      socket.once('data', (d: Buffer) => (/^HTTP\/1\.1 200/.test(d.toString('latin1')) ? ok(socket) : fail(new Error(d.toString('latin1')))));
    });
  });
}

async function up(socket: TLSSocket): Promise<number> {
  const chunk = Buffer.alloc(256 << 10, 7);
  const t0 = performance.now();
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
  }
  socket.end();
  await new Promise((r) => socket.once('close', r));
  return bytes / 1e6 / ((performance.now() - t0) / 1000);
}

async function down(socket: TLSSocket): Promise<number> {
  const t0 = performance.now();
  let got = 0;
  socket.on('data', (d: Buffer) => (got += d.length));
  socket.write(`SEND ${bytes}\n`);
  await new Promise((r) => socket.once('end', r));
  socket.destroy();
  if (got !== bytes) throw new Error(`got ${got} of ${bytes} bytes`);
  return bytes / 1e6 / ((performance.now() - t0) / 1000);
}

const env = await createBenchEnv();
const profDir = join(env.dir, 'profiles');
const server = await startServer(env, 'gatehouse', 1, 'gatehouse 1 process', ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
const upMBps = await up(await tunnel(env, server.target.url));
const downMBps = await down(await tunnel(env, server.target.url));
const rss = treeRssMiB(server.pid);
await server.stop();
process.stdout.write(`${args.mib} MiB each way through one CONNECT tunnel: up ${upMBps.toFixed(0)} MB/s, down ${downMBps.toFixed(0)} MB/s; gateway RSS at the end ${rss.toFixed(0)} MiB\n\n`);
const files = readdirSync(profDir).map((f) => join(profDir, f)).sort((a, b) => readFileSync(b).length - readFileSync(a).length);
if (files[0]) process.stdout.write(`## main thread\n\n${summarize(JSON.parse(readFileSync(files[0], 'utf8')) as Profile, Number(args.top))}\n`);
await env.stop();
