// Raw TCP tunnels through a real `gatehouse serve`, by CONNECT (real curl and a node client) and by the
// WebSocket tunnel endpoint: admission, half-close each way, exact byte counts, backpressure, timeouts.
import { createHash, randomBytes } from 'node:crypto';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { startEchoService } from '../src/demo/echoService.ts';
import { cli, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { connectTunnel, rssMb, unixService, webSocketTunnel, type Opened, type Refusal, type TunnelEnd, type UnixService } from './support/tunnelPeers.ts';

const MiB = 1 << 20;
const FIREHOSE_MB = 512;

const tcpRoute = (name: string, extra = '', upstream = `unix:run/${name}.sock`) => `  - name: ${name}
    protocols: [tcp]
    upstream: ${upstream}
${extra}    policy: |
      allow if user($u), protocol("tcp");
`;
const routes = (resetterPort: number) => [
  tcpRoute('web'),
  tcpRoute('sink'),
  tcpRoute('greeter'),
  tcpRoute('both'),
  tcpRoute('firehose'),
  tcpRoute('hoarder'),
  tcpRoute('echo'),
  tcpRoute('resetter', '', `tcp:127.0.0.1:${resetterPort}`),
  tcpRoute('sleepy', '    idleTimeoutSeconds: 1\n'),
  tcpRoute('down'),
  `  - name: ops-only
    protocols: [tcp]
    upstream: unix:run/echo.sock
    policy: |
      allow if group("ops");
  - name: plain
    path: /plain/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
`,
].join('');

let h: Harness;
let alice: TestClientCertificate;
let aliceToken: string;
const services: UnixService[] = [];
/** What the greeter service received on each connection, in order. */
const greeterHeard: string[] = [];
/** Digest and length of what the `both` service received. */
const bothHeard: Array<{ bytes: number; sha: string }> = [];
const bothPayload = randomBytes(5 * MiB);
let firehoseSocket: Socket | undefined;
/** The hoarder takes connections but does not read until the test says so; then it counts. */
let hoarder: { socket: Socket; received: Promise<number> } | undefined;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const token = (user: string, extra = '') => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()}; ${extra}`);
const connections = () => services.reduce((n, s) => n + s.connections(), 0);
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Transport = 'connect' | 'websocket';
const transportName = { connect: 'connect', websocket: 'websocket-tunnel' } as const;

function open(transport: Transport, route: string, tok: string | null = aliceToken): Promise<Opened | Refusal> {
  if (transport === 'websocket') return webSocketTunnel(h, alice, route, tok ?? undefined);
  return connectTunnel(h, alice, `${route}:443`, tok ? { 'Proxy-Authorization': `Bearer ${tok}` } : {});
}

async function opened(transport: Transport, route: string): Promise<TunnelEnd> {
  const t = await open(transport, route);
  if (!t.ok) throw new Error(`tunnel to ${route} refused: ${t.status} ${t.body}`);
  return t.end;
}

/** Everything the tunnel delivers until the upstream's eof. */
function collect(end: TunnelEnd): Promise<Buffer> {
  const chunks: Buffer[] = [];
  end.onData((c) => chunks.push(c));
  return end.peerEnded.then(() => Buffer.concat(chunks));
}

const closeRecord = (route: string, transport: Transport) =>
  h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === route && r.detail?.transport === transportName[transport], 10_000);

/**
 * Waits for a tunnel the gateway ended. A CONNECT client only sees the end of the stream (no TLS
 * close_notify): like any half-open TCP peer it then closes its own side.
 */
/** A tunnel the gateway cut: a CONNECT client sees a reset, never a clean end; a WebSocket one a close code. */
async function gatewayClosed(transport: Transport, end: TunnelEnd): Promise<{ code?: number; reason?: string }> {
  let ended = false;
  void end.peerEnded.then(() => (ended = true));
  const closed = await end.closed;
  if (transport === 'connect') expect(ended).toBe(false);
  return closed;
}

/** Sends `data` in 64 KiB pieces, honouring backpressure. */
async function send(end: TunnelEnd, data: Buffer): Promise<void> {
  for (let i = 0; i < data.length; i += 64 * 1024) await end.write(data.subarray(i, i + 64 * 1024));
}

function curlProxy(url: string, headers: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = ['-sS', '--max-time', '10', '-p', '--proxy', `https://localhost:${h.port}`, '--proxy-cacert', h.pki.caCertPath, '--proxy-cert', alice.certPath, '--proxy-key', alice.keyPath];
  for (const hd of headers) args.push('--proxy-header', hd);
  return new Promise((resolve) => {
    const child = execFile('curl', [...args, url], (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
    child.stdin?.end(input ?? '');
  });
}

let resetter: Server;

beforeAll(async () => {
  // A TCP upstream that resets the connection at the first byte (RST needs TCP, not a UNIX socket).
  resetter = createServer((s) => s.once('data', () => s.resetAndDestroy()));
  await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', () => resolve()));
  h = await startHarness({ routes: routes((resetter.address() as AddressInfo).port) });
  alice = await h.pki.client('alice');
  aliceToken = token('alice');
  const run = (name: string) => join(h.dir, 'run', `${name}.sock`);
  const web = await startEchoService(run('web'), 'web');
  let webConnections = 0;
  web.on('connection', () => webConnections++);
  services.push({ server: web, connections: () => webConnections, close: () => web.close() });
  services.push(
    // Hashes what arrives; at the client's eof answers "<bytes> <sha256>" and ends.
    await unixService(run('sink'), (s) => {
      const hash = createHash('sha256');
      let n = 0;
      s.on('data', (d: Buffer) => ((n += d.length), hash.update(d)));
      s.on('end', () => s.end(`${n} ${hash.digest('hex')}\n`));
    }),
    // Greets and ends its own side at once, but keeps listening.
    await unixService(run('greeter'), (s) => {
      let heard = '';
      s.end('hello from upstream\n');
      s.on('data', (d: Buffer) => (heard += d.toString()));
      s.on('end', () => greeterHeard.push(heard));
    }),
    // 5 MiB each way.
    await unixService(run('both'), (s) => {
      const hash = createHash('sha256');
      let n = 0;
      s.on('data', (d: Buffer) => ((n += d.length), hash.update(d)));
      s.on('end', () => bothHeard.push({ bytes: n, sha: hash.digest('hex') }));
      s.end(bothPayload);
    }),
    // Offers FIREHOSE_MB at once (the same buffer queued again and again costs this process nothing).
    await unixService(run('firehose'), (s) => {
      firehoseSocket = s;
      const chunk = Buffer.alloc(MiB, 7);
      for (let i = 0; i < FIREHOSE_MB; i++) s.write(chunk);
      s.end();
    }),
    await unixService(run('hoarder'), (s) => {
      s.pause();
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      hoarder = { socket: s, received: new Promise((resolve) => s.on('end', () => (s.end(), resolve(n)))) };
    }),
    await unixService(run('echo'), (s) => s.pipe(s)),
    await unixService(run('sleepy'), (s) => s.pipe(s)),
  );
});

afterAll(async () => {
  for (const s of services) s.close();
  resetter?.close();
  await h?.stop();
});

describe.each(['connect', 'websocket'] as const)('%s tunnel', (transport) => {
  it('half-close from the client: it sends, ends its side, and still gets the reply', async () => {
    const end = await opened(transport, 'sink');
    const reply = collect(end);
    const parts = ['first part, ', 'second part, ', 'and the last'];
    for (const p of parts) await end.write(Buffer.from(p));
    end.end();
    const sent = Buffer.from(parts.join(''));
    expect((await reply).toString()).toBe(`${sent.length} ${sha(sent)}\n`);
    await end.closed;
    const close = await closeRecord('sink', transport);
    expect(close).toMatchObject({ protocol: 'tcp', bytesIn: sent.length, bytesOut: (await reply).length, reason: 'client closed', status: transport === 'connect' ? 200 : 101 });
    const openRecord = h.audit().find((r) => r.event === 'tunnel.open' && r.req === close.req);
    expect(openRecord).toMatchObject({ decision: 'allow', route: 'sink', token: { user: 'alice' }, client: { cn: 'alice' } });
    expect(h.audit().filter((r) => r.req === close.req).map((r) => r.event)).toEqual(['tunnel.open', 'tunnel.close']);
  });

  it('half-close from the upstream: it ends first, and the client keeps sending', async () => {
    const end = await opened(transport, 'greeter');
    const greeting = await collect(end);
    expect(greeting.toString()).toBe('hello from upstream\n');
    const heardBefore = greeterHeard.length;
    await end.write(Buffer.from('still talking after your eof'));
    end.end();
    await end.closed;
    await expect.poll(() => greeterHeard.length).toBe(heardBefore + 1);
    expect(greeterHeard.at(-1)).toBe('still talking after your eof');
    expect(await closeRecord('greeter', transport)).toMatchObject({ bytesIn: 28, bytesOut: 20, reason: 'upstream closed' });
  });

  it('carries 5 MiB each way byte-identical, and the close record counts exactly that', async () => {
    const end = await opened(transport, 'both');
    const received = collect(end);
    const outgoing = randomBytes(5 * MiB);
    const heardBefore = bothHeard.length;
    await send(end, outgoing);
    end.end();
    expect(sha(await received)).toBe(sha(bothPayload));
    await end.closed;
    await expect.poll(() => bothHeard.length).toBe(heardBefore + 1);
    expect(bothHeard.at(-1)).toEqual({ bytes: outgoing.length, sha: sha(outgoing) });
    expect(await closeRecord('both', transport)).toMatchObject({ bytesIn: 5 * MiB, bytesOut: 5 * MiB });
  });

  it('refuses without a good token or route, and then never contacts the upstream', async () => {
    const before = connections();
    const cases: Array<[string, string | null, number]> = [
      ['echo', null, 401],
      ['echo', token('alice', 'check if route("sink");'), 403],
      ['ops-only', aliceToken, 403],
      ['no-such-route', aliceToken, 404],
      ['plain', aliceToken, 404], // an HTTP route is not a tunnel target
    ];
    for (const [route, tok, status] of cases) {
      const t = await open(transport, route, tok);
      expect(t.ok, route).toBe(false);
      expect((t as Refusal).status, route).toBe(status);
      expect(JSON.parse((t as Refusal).body), route).toHaveProperty('error');
    }
    await wait(200);
    expect(connections()).toBe(before);
    const denials = h.audit().filter((r) => r.event === 'request' && r.protocol === 'tcp' && r.detail?.transport === transportName[transport]);
    expect(denials.map((r) => [r.decision, r.status])).toEqual(cases.map(([, , status]) => ['deny', status]));
    expect(denials[2]?.reason).toMatch(/ops/);
  });

  it('answers 502 when the upstream cannot be reached, with its open and close records', async () => {
    const t = await open(transport, 'down');
    expect(t).toMatchObject({ ok: false, status: 502 });
    expect(await closeRecord('down', transport)).toMatchObject({ status: 502, bytesIn: 0, bytesOut: 0, reason: 'upstream error: ENOENT' });
  });

  it('passes an upstream reset on as an error, leaving other tunnels alone', async () => {
    const bystander = await opened(transport, 'echo');
    const echoed = new Promise<string>((resolve) => bystander.onData((d) => resolve(d.toString())));
    const end = await opened(transport, 'resetter');
    await end.write(Buffer.from('x'));
    const closed = await gatewayClosed(transport, end);
    if (transport === 'websocket') expect(closed).toEqual({ code: 1011, reason: 'upstream error: ECONNRESET' });
    expect(await closeRecord('resetter', transport)).toMatchObject({ reason: 'upstream error: ECONNRESET', bytesIn: 1 });
    await bystander.write(Buffer.from('still here'));
    expect(await echoed).toBe('still here');
    bystander.end();
    await bystander.closed;
  });

  it('closes a tunnel idle for idleTimeoutSeconds with reason "idle timeout"', async () => {
    const end = await opened(transport, 'sleepy');
    const echoed = new Promise<string>((resolve) => end.onData((d) => resolve(d.toString())));
    await end.write(Buffer.from('ping'));
    expect(await echoed).toBe('ping');
    const closed = await gatewayClosed(transport, end);
    if (transport === 'websocket') expect(closed).toEqual({ code: 1000, reason: 'idle timeout' });
    const record = await closeRecord('sleepy', transport);
    expect(record).toMatchObject({ reason: 'idle timeout', bytesIn: 4, bytesOut: 4 });
    expect(record.durationMs).toBeGreaterThanOrEqual(1000);
  });

  it('keeps memory bounded while a stalled client does not read what the upstream offers', async () => {
    const end = await opened(transport, 'firehose');
    end.pause();
    const pid = h.proc.pid as number;
    const baseline = rssMb(pid);
    let peak = baseline;
    for (let i = 0; i < 20; i++) {
      await wait(200);
      peak = Math.max(peak, rssMb(pid));
    }
    const taken = FIREHOSE_MB - (firehoseSocket?.writableLength ?? 0) / MiB;
    console.log(`${transport}: stalled reader, ${FIREHOSE_MB} MiB offered; the gateway took ${taken.toFixed(1)} MiB off the upstream in 4 s; gateway RSS ${baseline.toFixed(0)} -> peak ${peak.toFixed(0)} MB (+${(peak - baseline).toFixed(0)} MB)`);
    expect(taken).toBeLessThan(64);
    expect(peak - baseline).toBeLessThan(100);
    // Then the reader wakes up and gets every byte.
    let n = 0;
    end.onData((d) => (n += d.length));
    end.resume();
    await end.peerEnded;
    expect(n).toBe(FIREHOSE_MB * MiB);
    end.end();
    await end.closed;
    expect(await closeRecord('firehose', transport)).toMatchObject({ bytesOut: FIREHOSE_MB * MiB, bytesIn: 0 });
  }, 60_000);

  it('keeps memory bounded while the upstream does not read what the client keeps sending', async () => {
    const end = await opened(transport, 'hoarder');
    const pid = h.proc.pid as number;
    const baseline = rssMb(pid);
    let peak = baseline;
    let pushed = 0;
    let writing = true;
    const chunk = randomBytes(64 * 1024);
    const writer = (async () => {
      while (writing) {
        await end.write(chunk);
        pushed += chunk.length;
      }
    })();
    for (let i = 0; i < 15; i++) {
      await wait(200);
      peak = Math.max(peak, rssMb(pid));
    }
    writing = false;
    console.log(`${transport}: stalled upstream, client writing for 3 s got ${(pushed / MiB).toFixed(1)} MiB accepted; gateway RSS ${baseline.toFixed(0)} -> peak ${peak.toFixed(0)} MB (+${(peak - baseline).toFixed(0)} MB)`);
    expect(pushed).toBeLessThan(64 * MiB);
    expect(peak - baseline).toBeLessThan(100);
    // The upstream starts reading: everything the client was allowed to send arrives, and no more.
    hoarder?.socket.resume();
    await writer;
    end.end();
    expect(await hoarder?.received).toBe(pushed);
    await end.closed;
    expect(await closeRecord('hoarder', transport)).toMatchObject({ bytesIn: pushed, bytesOut: 0 });
  });
});

describe('CONNECT with real curl', () => {
  it('carries HTTP to the upstream (curl -p --proxy https://... http://ROUTE:PORT/)', async () => {
    const res = await curlProxy('http://web:1/hello', [`Proxy-Authorization: Bearer ${aliceToken}`]);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ service: 'web', url: '/hello' });
    expect(await closeRecord('web', 'connect')).toMatchObject({ status: 200, target: 'web:1', reason: 'client closed' });
  });

  it('carries a raw conversation (curl -p ... telnet://ROUTE:PORT) until the upstream ends it', async () => {
    const res = await curlProxy('telnet://greeter:1', [`Proxy-Authorization: Bearer ${aliceToken}`]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe('hello from upstream\n');
  });

  it('reports the refusal: curl exits 56 with the status', async () => {
    const res = await curlProxy('http://web:1/hello', []);
    expect(res.code).toBe(56);
    expect(res.stderr).toMatch(/CONNECT tunnel failed, response 401/);
  });
});

describe('CONNECT details', () => {
  it('accepts the token in Authorization, and forwards bytes sent before the 200', async () => {
    const t = await connectTunnel(h, alice, 'sink:1', { Authorization: `Bearer ${aliceToken}` }, Buffer.from('early bytes'));
    expect(t.ok).toBe(true);
    const end = (t as Opened).end;
    const reply = collect(end);
    end.end();
    expect((await reply).toString()).toBe(`11 ${sha(Buffer.from('early bytes'))}\n`);
  });

  it('refuses a malformed target with 400 and keeps serving', async () => {
    for (const target of ['[::1]:22', 'a/b:1', ':1', 'x'.repeat(300)]) {
      const t = await connectTunnel(h, alice, target, { 'Proxy-Authorization': `Bearer ${aliceToken}` });
      expect(t, target).toMatchObject({ ok: false, status: target.length === 300 ? 404 : 400 });
    }
    expect(h.audit().filter((r) => r.event === 'request' && r.method === 'CONNECT' && r.status === 400).length).toBeGreaterThanOrEqual(3);
    const end = await opened('connect', 'echo');
    const echoed = new Promise<string>((resolve) => end.onData((d) => resolve(d.toString())));
    await end.write(Buffer.from('fine'));
    expect(await echoed).toBe('fine');
    end.end();
    await end.closed;
  });
});

describe('tunnel settings in routes.yaml', () => {
  it('gatehouse check refuses tunnel keys where they mean nothing, naming the line', () => {
    const top = readFileSync(join(h.dir, 'routes.yaml'), 'utf8').split('routes:\n')[0];
    const file = join(h.dir, 'routes-bad.yaml');
    writeFileSync(file, `${top}routes:\n${tcpRoute('t', '    path: /t/\n    connectTimeoutSeconds: 0\n')}  - name: h\n    path: /h/\n    upstream: unix:run/h.sock\n    idleTimeoutSeconds: 5\n    policy: |\n      allow if true;\n`);
    const run = spawnSync(process.execPath, [cli, 'check', '--config', file], { encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/routes-bad\.yaml:\d+:\d+: routes\[0\]\.path: path has no effect on a tcp-only route/);
    expect(run.stderr).toMatch(/routes\[0\]\.connectTimeoutSeconds: /);
    expect(run.stderr).toMatch(/routes\[1\]\.idleTimeoutSeconds: idleTimeoutSeconds applies to websocket and tcp routes/);
  });
});

describe('WebSocket tunnel details', () => {
  it('chooses the gatehouse-tunnel.v1 subprotocol when offered, and works without one', async () => {
    const offered = await webSocketTunnel(h, alice, 'echo', aliceToken);
    expect(offered.ok && offered.ws.protocol).toBe('gatehouse-tunnel.v1');
    offered.ok && offered.ws.terminate();
    const plain = await webSocketTunnel(h, alice, 'echo', aliceToken, []);
    expect(plain.ok && plain.ws.protocol).toBe('');
    plain.ok && plain.ws.terminate();
  });

  it('answers a plain GET on the tunnel path with 426, however the path is spelled', async () => {
    for (const path of ['/.well-known/gatehouse/tunnel/echo', '/.well-known/gatehouse/%74unnel/echo', '//.well-known/./gatehouse/tunnel/x/../echo']) {
      const res = await new Promise<string>((resolve) =>
        execFile('curl', ['-sS', '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', h.pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '-H', `Authorization: Bearer ${aliceToken}`, `https://localhost:${h.port}${path}`], (_e, out) => resolve(out)),
      );
      expect(res, path).toBe('426');
    }
    const encoded = await webSocketTunnel(h, alice, '%65cho', aliceToken);
    expect(encoded.ok).toBe(true);
    encoded.ok && encoded.ws.terminate();
  });

  it('closes on protocol errors (non-JSON text, data after eof, oversized message) without harming other tunnels', async () => {
    const bystander = await opened('websocket', 'echo');
    const misbehaviours: Array<[(ws: WebSocket) => void, number]> = [
      [(ws) => ws.send('not json'), 1002],
      [(ws) => (ws.send('{"type":"eof"}'), ws.send(Buffer.from('late'))), 1002],
      [(ws) => ws.send(Buffer.alloc(5 * MiB)), 1009],
    ];
    for (const [misbehave, code] of misbehaviours) {
      const t = await webSocketTunnel(h, alice, 'echo', aliceToken);
      if (!t.ok) throw new Error('refused');
      misbehave(t.ws);
      const closed = await t.end.closed;
      expect(closed.code).toBe(code);
      if (code === 1002) expect(closed.reason).toMatch(/^protocol error/);
    }
    // Unknown control messages are for later protocol versions: ignored.
    const later = await webSocketTunnel(h, alice, 'echo', aliceToken);
    if (!later.ok) throw new Error('refused');
    const echoed = new Promise<string>((resolve) => later.end.onData((d) => resolve(d.toString())));
    later.ws.send('{"type":"something-new"}');
    await later.end.write(Buffer.from('after a new control message'));
    expect(await echoed).toBe('after a new control message');
    later.end.end();
    await later.end.closed;

    const bystanderEcho = new Promise<string>((resolve) => bystander.onData((d) => resolve(d.toString())));
    await bystander.write(Buffer.from('unharmed'));
    expect(await bystanderEcho).toBe('unharmed');
    bystander.end();
    expect(await bystander.closed).toEqual({ code: 1000, reason: '' });
  });
});

describe('shutdown', () => {
  it('ends open tunnels with a close record saying so', async () => {
    const viaConnect = await opened('connect', 'echo');
    const viaWebSocket = await opened('websocket', 'echo');
    const echoed = new Promise<string>((resolve) => viaConnect.onData((d) => resolve(d.toString())));
    await viaConnect.write(Buffer.from('before shutdown'));
    expect(await echoed).toBe('before shutdown');
    const stopped = h.stop('SIGTERM');
    expect(await viaWebSocket.closed).toEqual({ code: 1001, reason: 'gateway shutting down' });
    await gatewayClosed('connect', viaConnect);
    expect(await stopped).toBe(0);
    const closes = h.audit().filter((r: AuditRecord) => r.event === 'tunnel.close' && r.reason === 'gateway shutting down');
    expect(closes.map((r) => r.detail?.transport).sort()).toEqual(['connect', 'websocket-tunnel']);
    expect(closes.find((r) => r.detail?.transport === 'connect')).toMatchObject({ bytesIn: 15, bytesOut: 15 });
  });
});
