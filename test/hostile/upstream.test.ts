// Hostile and broken upstreams behind a real `gatehouse serve`: missing, foreign-owned and symlinked
// sockets, numeric user names, upstreams that reset, stall, babble or flood a client that does not read.
import { chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inOneHour, mintRaw, startHarness, type Harness } from '../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { rssMb } from '../support/tunnelPeers.ts';
import { auditMark, recordAfter, sleep } from './support/caseChecks.ts';
import type { AuditEntry } from './support/hostileGateway.ts';
import { rawExchange, type RawExchange } from './support/rawClient.ts';
import { startUpstreamRecorder, type UpstreamRecorder } from './support/upstreamRecorder.ts';

const isRoot = process.getuid?.() === 0;
const MiB = 1 << 20;

const route = (name: string, extra = '') => `  - name: ${name}
    path: /${name}/
    upstream: unix:run/${name}.sock
${extra}    policy: |
      allow if user($u);
`;
const routes = [
  route('good'),
  route('missing'),
  route('regularfile'),
  route('hangup'),
  route('garbage'),
  route('hugeheader'),
  route('reset'),
  route('silent'),
  route('flood'),
  `  - name: users
    path: /~{user}/{service}/
    upstream: unix:run/users/{user}/{service}.sock
    socketOwner: user
    policy: |
      allow if user($u), param("user", $u);
`,
].join('');

let h: Harness;
let alice: TestClientCertificate;
let good: UpstreamRecorder;
/** Scripted upstreams by route name; each counts the connections it accepted. */
const scripted = new Map<string, { server: Server; connections: number; open: Set<Socket>; written: number }>();
/** Recorders at the sockets the socketOwner route may (or must not) reach, by `user/service`. */
const userSockets = new Map<string, UpstreamRecorder>();

const token = (user: string) => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()};`);
const get = (path: string, user = 'alice', timeoutMs = 8000): Promise<RawExchange> =>
  rawExchange({ port: h.port, ca: h.pki.caCert, cert: alice.cert, key: alice.key }, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token(user)}\r\nConnection: close\r\n\r\n`, { expectResponses: 1, timeoutMs });
const recordFor = (path: string, mark: number, timeoutMs = 3000) => recordAfter({ h }, mark, (r: AuditEntry) => r.event === 'request' && r.path === path, timeoutMs);

async function scriptedUpstream(name: string, onRequest: (socket: Socket, state: { written: number }) => void): Promise<void> {
  const path = join(h.dir, 'run', `${name}.sock`);
  mkdirSync(dirname(path), { recursive: true });
  const entry = { server: undefined as unknown as Server, connections: 0, open: new Set<Socket>(), written: 0 };
  entry.server = createServer((socket) => {
    entry.connections += 1;
    entry.open.add(socket);
    socket.on('close', () => entry.open.delete(socket));
    socket.on('error', () => {});
    socket.once('data', () => onRequest(socket, entry));
  });
  await new Promise<void>((ok) => entry.server.listen(path, ok));
  scripted.set(name, entry);
}

async function userSocket(user: string, service: string, owner: number | undefined, at?: string): Promise<UpstreamRecorder> {
  const path = at ?? join(h.dir, 'run', 'users', user, `${service}.sock`);
  const rec = await startUpstreamRecorder(path);
  if (owner !== undefined) chownSync(path, owner, owner);
  userSockets.set(`${user}/${service}`, rec);
  return rec;
}

beforeAll(async () => {
  h = await startHarness({ routes });
  alice = await h.pki.client('alice');
  good = await startUpstreamRecorder(join(h.dir, 'run', 'good.sock'));
  writeFileSync(join(h.dir, 'run', 'regularfile.sock'), 'not a socket\n');
  await scriptedUpstream('hangup', (s) => s.destroy());
  await scriptedUpstream('garbage', (s) => s.end('SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 this is not HTTP\r\n\r\n'));
  await scriptedUpstream('hugeheader', (s) => s.end(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(128 * 1024)}\r\ncontent-length: 2\r\n\r\nok`));
  await scriptedUpstream('reset', (s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n' + 'x'.repeat(1000), () => s.destroy()));
  await scriptedUpstream('silent', () => {});
  await scriptedUpstream('flood', (s, state) => {
    s.write('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ' + 256 * MiB + '\r\n\r\n');
    const chunk = Buffer.alloc(MiB, 0x61);
    const pump = () => {
      while (state.written < 256 * MiB) {
        state.written += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  if (isRoot) {
    await userSocket('nobody', 'app', 65534);
    await userSocket('nobody', 'rootowned', 0);
    await userSocket('nobody', 'target', 65534, join(h.dir, 'run', 'elsewhere', 'target.sock'));
    symlinkSync(join(h.dir, 'run', 'elsewhere', 'target.sock'), join(h.dir, 'run', 'users', 'nobody', 'link.sock'));
    await userSocket('daemon', 'svc', 1, join(h.dir, 'run', 'real-daemon', 'svc.sock'));
    symlinkSync(join(h.dir, 'run', 'real-daemon'), join(h.dir, 'run', 'users', 'daemon'));
    await userSocket('0', 'svc', 0);
  }
});

afterAll(async () => {
  for (const s of scripted.values()) {
    for (const sock of s.open) sock.destroy();
    s.server.close();
  }
  await Promise.all([good, ...userSockets.values()].map((r) => r?.close()));
  await h?.stop();
});

async function expectStillServes(): Promise<void> {
  const res = await get('/good/still-serving');
  expect(res.finals[0]?.status, 'the gateway no longer serves a good request').toBe(200);
}

interface UpstreamCase {
  name: string;
  path: string;
  user?: string;
  status: number;
  error?: string;
  reason: RegExp;
  /** Connections the case's upstream must have accepted (and the recorder behind it). */
  reached?: () => number;
  rootOnly?: boolean;
}

const reachedUser = (key: string) => () => userSockets.get(key)?.connections ?? 0;
const reachedScripted = (name: string) => () => scripted.get(name)?.connections ?? 0;

const cases: UpstreamCase[] = [
  { name: 'socket missing -> 502', path: '/missing/x', status: 502, error: 'upstream unavailable', reason: /ENOENT/ },
  { name: 'regular file where the socket should be -> 502', path: '/regularfile/x', status: 502, error: 'upstream unavailable', reason: /ECONNREFUSED|ENOTSOCK|not a socket/ },
  { name: 'upstream closes without answering -> 502', path: '/hangup/x', status: 502, error: 'upstream unavailable', reason: /socket hang up|ECONNRESET|closed/i, reached: reachedScripted('hangup') },
  { name: 'upstream answers bytes that are not HTTP -> 502', path: '/garbage/x', status: 502, error: 'upstream unavailable', reason: /HPE_|parse|invalid/i, reached: reachedScripted('garbage') },
  { name: 'upstream answers with a 128 KiB header -> 502', path: '/hugeheader/x', status: 502, error: 'upstream unavailable', reason: /HPE_HEADER_OVERFLOW|header|overflow/i, reached: reachedScripted('hugeheader') },
  { name: 'socketOwner: socket of user nobody owned by root -> 502', path: '/~nobody/rootowned/x', user: 'nobody', status: 502, error: 'upstream unavailable', reason: /owned by uid 0, not nobody/, reached: reachedUser('nobody/rootowned'), rootOnly: true },
  { name: 'socketOwner: symlink to a good socket of the same user -> 502', path: '/~nobody/link/x', user: 'nobody', status: 502, error: 'upstream unavailable', reason: /is a symlink/, reached: reachedUser('nobody/target'), rootOnly: true },
  { name: 'socketOwner: user directory reached through a symlink -> 502', path: '/~daemon/svc/x', user: 'daemon', status: 502, error: 'upstream unavailable', reason: /through a symlink/, reached: reachedUser('daemon/svc'), rootOnly: true },
  { name: 'socketOwner: token for user "0" on a root-owned socket -> refused, never reached', path: '/~0/svc/x', user: '0', status: 502, reason: /"0"|user name|numeric/i, reached: reachedUser('0/svc'), rootOnly: true },
];

describe('upstreams that are missing, foreign or not what they seem', () => {
  for (const c of cases) {
    it.skipIf(c.rootOnly === true && !isRoot)(`${c.name}${c.rootOnly && !isRoot ? ' (skipped: needs root to chown sockets)' : ''}`, async () => {
      const mark = auditMark({ h });
      const before = c.reached?.() ?? 0;
      const res = await get(c.path, c.user);
      const status = res.finals[0]?.status;
      if (c.user === '0') expect([403, 502]).toContain(status);
      else expect(status).toBe(c.status);
      if (c.error !== undefined) expect(JSON.parse(res.finals[0]?.text ?? '{}')).toEqual({ error: c.error });
      const r = await recordFor(c.path, mark);
      expect(r).toMatchObject({ event: 'request', status });
      expect(r?.reason).toMatch(c.reason);
      // Unavailable before connecting (ownership, missing): no connection; broken upstreams: exactly one.
      const expected = /not HTTP|without answering|header/.test(c.name) ? 1 : 0;
      expect((c.reached?.() ?? 0) - before, 'connections the upstream accepted').toBe(expected);
      await expectStillServes();
    });
  }

  it.skipIf(!isRoot)(`control: socketOwner route reaches a socket its user owns -> 200${isRoot ? '' : ' (skipped: needs root to chown sockets)'}`, async () => {
    const res = await get('/~nobody/app/x', 'nobody');
    expect(res.finals[0]?.status).toBe(200);
    expect(userSockets.get('nobody/app')?.connections).toBe(1);
  });
});

describe('upstreams that misbehave mid-response', () => {
  // A UNIX socket cannot send a TCP reset: the upstream process dying mid-body looks like this.
  it('upstream dies after 1000 of 100000 body bytes: the client is cut off, the audit says so', async () => {
    const mark = auditMark({ h });
    const res = await get('/reset/x');
    expect(res.finals[0]?.status).toBe(200);
    expect(res.finals[0]?.complete, 'the client must see an incomplete body, not a short success').toBe(false);
    expect(res.closedByGateway).toBe(true);
    const r = await recordFor('/reset/x', mark);
    expect(r?.reason).toBe('upstream closed before the response was complete');
    await expectStillServes();
  });

  it('upstream accepts and never answers: no answer for 4 s (proxy timeout is 120 s); when the client leaves the gateway drops the upstream connection and records it', async () => {
    const silent = scripted.get('silent');
    const mark = auditMark({ h });
    const res = await get('/silent/x', 'alice', 4000);
    expect(res.finals).toHaveLength(0);
    expect(silent?.connections).toBe(1);
    const until = Date.now() + 3000;
    while ((silent?.open.size ?? 0) > 0 && Date.now() < until) await sleep(50);
    expect(silent?.open.size, 'upstream connections still open after the client left').toBe(0);
    const r = await recordFor('/silent/x', mark);
    expect(r?.reason).toBe('client closed before response completed');
    expect(r?.status, 'no answer was sent: not a 200').toBe(499);
    await expectStillServes();
  }, 15_000);

  it('upstream floods 256 MiB to a client that reads nothing for 3 s: gateway RSS grows < 64 MB and the upstream is held back', async () => {
    const flood = scripted.get('flood');
    const pid = h.proc.pid as number;
    const rssBefore = rssMb(pid);
    const socket = tlsConnect({ host: '127.0.0.1', port: h.port, servername: 'localhost', ca: h.pki.caCert, cert: alice.cert, key: alice.key });
    socket.on('error', () => {});
    await new Promise<void>((ok) => socket.once('secureConnect', () => ok()));
    socket.write(`GET /flood/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token('alice')}\r\n\r\n`);
    socket.pause();
    let peak = rssBefore;
    for (let i = 0; i < 30; i++) {
      await sleep(100);
      peak = Math.max(peak, rssMb(pid));
    }
    const offered = flood?.written ?? 0;
    socket.destroy();
    expect(peak - rssBefore, `RSS growth in MB (before ${rssBefore.toFixed(1)}, peak ${peak.toFixed(1)})`).toBeLessThan(64);
    expect(offered, 'bytes the upstream got to write while the client read nothing').toBeLessThan(64 * MiB);
    const until = Date.now() + 3000;
    while ((flood?.open.size ?? 0) > 0 && Date.now() < until) await sleep(50);
    expect(flood?.open.size, 'the upstream connection is dropped once the client is gone').toBe(0);
    await expectStillServes();
  }, 20_000);
});
