// Benchmark of the portal's audit view (not a test): a real gateway and a signed-in user, then the
// audit log grown by --growth-mib of record-shaped lines; portal view time, a bystander's request and gateway RSS.
// Usage: node bench/portal-tail.ts [--growth-mib 1024 --views 20 --processes 1]
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { inOneHour, mintRaw, startHarness } from '../test/support/gatewayHarness.ts';
import { treeRssMiB } from './support/procStats.ts';

const { values: args } = parseArgs({ options: { 'growth-mib': { type: 'string', default: '1024' }, views: { type: 'string', default: '20' }, processes: { type: 'string', default: '1' } } });
const growthMiB = Number(args['growth-mib']);
const views = Number(args.views);
const MIB = 1 << 20;

const routes = `  - name: app
    path: /app/
    stripPrefix: false
    upstream: unix:run/app.sock
    policy: |
      allow if user($u);
`;
const h = await startHarness({ routes, serveArgs: ['--processes', args.processes as string] });
mkdirSync(join(h.dir, 'run'), { recursive: true });
const upstream = createServer((_req, res) => res.end('ok')).listen(join(h.dir, 'run', 'app.sock'));
const alice = await h.pki.client('alice');
const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
const pid = h.proc.pid as number;

interface Reply {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  ms: number;
}

function send(method: string, path: string, headers: Record<string, string>, body = ''): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: h.port, servername: 'localhost', method, path, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, ca: h.pki.caCert, cert: alice.cert, key: alice.key, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers, ms: performance.now() - started }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const signedIn = await send('POST', '/.well-known/gatehouse/session', { 'content-type': 'application/x-www-form-urlencoded' }, `token=${encodeURIComponent(token)}`);
const cookie = /^([^;]+)/.exec(String(signedIn.headers['set-cookie'] ?? ''))?.[1] ?? '';
if (signedIn.status !== 303 || !cookie) throw new Error(`sign-in failed: ${signedIn.status}`);
const portal = () => send('GET', '/.well-known/gatehouse/', { cookie });
const bystander = () => send('GET', '/app/bystander', { authorization: `Bearer ${token}` });
const activity = (page: string) => /id="activity">([\s\S]*?)<\/(table|p)>/.exec(page)?.[1] ?? '';

/** `views` portal views, each with a bystander's request sent at the same moment: medians and maxima in ms. */
async function measure(label: string): Promise<void> {
  const viewMs: number[] = [];
  const otherMs: number[] = [];
  for (let i = 0; i < views; i++) {
    const [view, other] = await Promise.all([portal(), bystander()]);
    if (view.status !== 200 || other.status !== 200) throw new Error(`${label}: portal ${view.status}, bystander ${other.status}`);
    viewMs.push(view.ms);
    otherMs.push(other.ms);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const fmt = (xs: number[]) => `median ${median(xs).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
  console.log(`${label.padEnd(34)} portal view: ${fmt(viewMs)}; bystander during views: ${fmt(otherMs)}; gateway RSS ${treeRssMiB(pid).toFixed(0)} MiB`);
}

/** Record-shaped filler lines (another user's denied requests), about 2 KiB each, in one 4 MiB chunk. */
function fillerChunk(): Buffer {
  const lines: string[] = [];
  for (let size = 0, i = 0; size < 4 * MIB; i++) {
    const line = JSON.stringify({ seq: i, prev: 'f'.repeat(64), time: new Date().toISOString(), event: 'request', conn: 'c9', req: `c9.${i}`, source: '127.0.0.9:9', token: { user: 'mallory' }, route: 'app', path: `/app/${'m'.repeat(1800)}`, decision: 'deny', status: 403, reason: 'filler' });
    lines.push(line);
    size += line.length + 1;
  }
  return Buffer.from(lines.join('\n') + '\n');
}

try {
  for (let i = 0; i < 5; i++) await send('GET', `/app/before-${i}`, { authorization: `Bearer ${token}` });
  await measure('before growth');
  const chunk = fillerChunk();
  const fd = openSync(h.auditFile, 'a');
  let written = 0;
  const started = performance.now();
  for (let step = 1; written < growthMiB * MIB; step++) {
    written += writeSync(fd, chunk);
    // A view now and then while the log grows, as users would look.
    if (step % 64 === 0) {
      const view = await portal();
      console.log(`  after ${(written / MIB).toFixed(0).padStart(5)} MiB of growth: one portal view ${view.ms.toFixed(1)} ms, gateway RSS ${treeRssMiB(pid).toFixed(0)} MiB`);
    }
  }
  closeSync(fd);
  console.log(`grew the audit log by ${(written / MIB).toFixed(0)} MiB in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await send('GET', '/app/after-growth', { authorization: `Bearer ${token}` });
  let shown = false;
  for (let i = 0; i < 50 && !shown; i++) {
    shown = activity((await portal()).body).includes('/app/after-growth');
    if (!shown) await new Promise((r) => setTimeout(r, 100));
  }
  console.log(`the portal shows the request made after the growth: ${shown ? 'yes' : 'NO'}`);
  await measure(`after ${growthMiB} MiB of growth`);
} finally {
  upstream.close();
  await h.stop();
  // The filler is real disk: leave none of it behind.
  rmSync(h.dir, { recursive: true, force: true });
}
