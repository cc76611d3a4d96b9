// Server CPU per MB through the tunnel path: a real `gatehouse serve` (1 process) and nginx stream mTLS,
// plain TLS clients in this process, CONNECT to the holder; CPU seconds of the server's tree per MB moved.
// Usage: node bench/tunnel-cpu.ts [--mib 512] [--rounds 3] [--streams 1] [--only gatehouse,nginx] [--directions up,down]
// CPU per MB hardly depends on how busy the shared machine is; MB/s does. Both are printed, medians.
import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { createBenchEnv, missingPeer, startServer, type BenchEnv, type RunningServer } from './support/benchEnv.ts';
import { treeCpuSeconds, treeRssMiB } from './support/procStats.ts';

const { values: args } = parseArgs({ options: { mib: { type: 'string', default: '512' }, rounds: { type: 'string', default: '3' }, streams: { type: 'string', default: '1' }, only: { type: 'string', default: 'gatehouse,nginx' }, directions: { type: 'string', default: 'up,down' } } });
const streams = Number(args.streams);
const bytesPerStream = Math.floor((Number(args.mib) * (1 << 20)) / streams);

/** A TLS connection to the server; through gatehouse a CONNECT to the holder route first. */
function open(env: BenchEnv, server: RunningServer, viaConnect: boolean): Promise<TLSSocket> {
  return new Promise((ok, fail) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(new URL(server.target.url).port), servername: 'localhost', cert: readFileSync(env.tls.cert), key: readFileSync(env.tls.key), ca: readFileSync(env.tls.ca) });
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      if (!viaConnect) return ok(socket);
      socket.write(`CONNECT hold:1 HTTP/1.1\r\nHost: hold:1\r\nProxy-Authorization: Bearer ${env.token}\r\n\r\n`);
      socket.once('data', (d: Buffer) => (/^HTTP\/1\.1 200/.test(d.toString('latin1')) ? ok(socket) : fail(new Error(d.toString('latin1')))));
    });
  });
}

async function up(socket: TLSSocket): Promise<void> {
  const chunk = Buffer.alloc(256 << 10, 7);
  for (let sent = 0; sent < bytesPerStream; sent += chunk.length) {
    if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
  }
  socket.end();
  await new Promise((r) => socket.once('close', r));
}

async function down(socket: TLSSocket): Promise<void> {
  let got = 0;
  socket.on('data', (d: Buffer) => (got += d.length));
  socket.write(`SEND ${bytesPerStream}\n`);
  await new Promise((r) => socket.once('end', r));
  socket.destroy();
  if (got !== bytesPerStream) throw new Error(`got ${got} of ${bytesPerStream} bytes`);
}

interface Figures { MBps: number; cpuUsPerMB: number }

async function measure(env: BenchEnv, server: RunningServer, viaConnect: boolean, move: (s: TLSSocket) => Promise<void>): Promise<Figures> {
  const sockets = await Promise.all(Array.from({ length: streams }, () => open(env, server, viaConnect)));
  const cpu0 = treeCpuSeconds(server.pid);
  const t0 = performance.now();
  await Promise.all(sockets.map(move));
  const seconds = (performance.now() - t0) / 1000;
  const mb = (bytesPerStream * streams) / 1e6;
  return { MBps: mb / seconds, cpuUsPerMB: ((treeCpuSeconds(server.pid) - cpu0) * 1e6) / mb };
}

const median = (xs: number[]): number => (xs.length === 0 ? NaN : ([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number));
const env = await createBenchEnv();
const kinds = args.only.split(',').filter((k) => (k === 'nginx' ? missingPeer('nginx-stream') === undefined : k === 'gatehouse'));
const results = new Map<string, { up: Figures[]; down: Figures[]; rss: number[] }>();
for (let round = 0; round < Number(args.rounds); round++) {
  for (const kind of kinds) {
    const server = await startServer(env, kind === 'nginx' ? 'nginx-stream' : 'gatehouse', 1, kind);
    const r = results.get(kind) ?? { up: [], down: [], rss: [] };
    if (args.directions.includes('up')) r.up.push(await measure(env, server, kind === 'gatehouse', up));
    if (args.directions.includes('down')) r.down.push(await measure(env, server, kind === 'gatehouse', down));
    r.rss.push(treeRssMiB(server.pid));
    await server.stop();
    results.set(kind, r);
  }
}
process.stdout.write(`| server (${streams} stream(s), ${args.mib} MiB each way, median of ${args.rounds}) | up MB/s | down MB/s | up CPU µs/MB | down CPU µs/MB | RSS at end MiB |\n| --- | ---: | ---: | ---: | ---: | ---: |\n`);
for (const [kind, r] of results) {
  const m = (fs: Figures[], k: keyof Figures) => median(fs.map((f) => f[k])).toFixed(0);
  process.stdout.write(`| ${kind} | ${m(r.up, 'MBps')} | ${m(r.down, 'MBps')} | ${m(r.up, 'cpuUsPerMB')} | ${m(r.down, 'cpuUsPerMB')} | ${median(r.rss).toFixed(0)} |\n`);
}
await env.stop();
