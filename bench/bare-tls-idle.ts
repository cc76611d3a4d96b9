// The floor under gatehouse's memory per idle tunnel: a bare node:tls server demanding a client certificate
// (no policy, no audit), holding --count idle connections, each piped to the holder socket or not; RSS growth per connection.
// Usage: node bench/bare-tls-idle.ts [--count 3000]
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { createBenchEnv } from './support/benchEnv.ts';
import { treeRssMiB } from './support/procStats.ts';
import { freePort } from '../test/support/localServices.ts';

const { values: args } = parseArgs({ options: { count: { type: 'string', default: '3000' } } });
const count = Number(args.count);

/** The server, run as a child so its RSS is its own: `piped` connects each TLS socket to the holder. */
const serverSource = `
const { createServer } = require('node:tls');
const { connect } = require('node:net');
const { readFileSync } = require('node:fs');
const [certs, hold, port, mode] = process.argv.slice(1);
createServer({ cert: readFileSync(certs + '/server.crt'), key: readFileSync(certs + '/server.key'), ca: readFileSync(certs + '/ca.crt'), requestCert: true, rejectUnauthorized: true }, (socket) => {
  socket.on('error', () => {});
  if (mode !== 'piped') return void socket.resume();
  const upstream = connect(hold).on('error', () => {});
  socket.pipe(upstream);
  upstream.pipe(socket);
}).listen(Number(port), '127.0.0.1', () => console.error('listening'));
`;

const env = await createBenchEnv();
const tls = { cert: readFileSync(env.tls.cert), key: readFileSync(env.tls.key), ca: readFileSync(env.tls.ca) };
for (const mode of ['piped', 'tls only']) {
  const port = await freePort();
  const server = spawn(process.execPath, ['-e', serverSource, env.certs, env.holdSocket, String(port), mode === 'piped' ? 'piped' : 'plain'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise((r) => server.stderr?.once('data', r));
  await new Promise((r) => setTimeout(r, 1000));
  const before = treeRssMiB(server.pid as number);
  const sockets: TLSSocket[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = Array.from({ length: Math.min(50, count - i) }, () => new Promise<TLSSocket>((ok, fail) => {
      const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ...tls }, () => (s.write('x'), ok(s)));
      s.once('error', fail);
    }));
    sockets.push(...(await Promise.all(batch)));
  }
  await new Promise((r) => setTimeout(r, 2000));
  const after = treeRssMiB(server.pid as number);
  process.stdout.write(`bare node:tls server, ${mode}: ${count} idle connections, RSS ${before.toFixed(0)} -> ${after.toFixed(0)} MiB, ${(((after - before) * 1024) / count).toFixed(1)} KiB each\n`);
  for (const s of sockets) s.destroy();
  server.kill();
}
await env.stop();
