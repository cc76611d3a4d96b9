// Hostile tunnel clients against a real `gatehouse serve`: CONNECT targets that name no tcp route,
// WebSocket handshakes and frames that break RFC 6455 or the tunnel protocol, the per-identity limit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditMark, expectStillServes, recordAfter, sleep } from './support/caseChecks.ts';
import { startHostileGateway, type HostileGateway, type UserName } from './support/hostileGateway.ts';
import type { RawConnection } from './support/rawClient.ts';
import { closeCodeIn, closeFrame, frame, upgradeRequest, type UpgradeOptions } from './support/wsRaw.ts';

const TUNNELS_PER_IDENTITY = 2;
const ENDPOINT = '/.well-known/gatehouse/tunnel/tcp';
let g: HostileGateway;

interface Opened {
  conn: RawConnection;
  /** The audit `source` of this connection. */
  source: string;
}

/** Opens a connection as `user`, sends `bytes`, waits until the head of an answer (or the close). */
async function exchange(bytes: string | Buffer, user: UserName = 'alice'): Promise<Opened & { status: number; body: string; after: Buffer }> {
  const conn = g.open(user);
  await conn.send(Buffer.alloc(0));
  const source = `127.0.0.1:${conn.socket.localPort}`;
  await conn.send(bytes);
  // A tunnel's 200 or 101 has no body: its head is the whole answer.
  const headDone = (raw: Buffer) => raw.includes('\r\n\r\n') && /^HTTP\/1\.1 (101|200 Connection Established)/.test(raw.toString('latin1', 0, 40));
  const snap = await conn.waitUntil((x) => headDone(x.raw) || (x.responses[0]?.complete ?? false), 8000);
  const cut = snap.raw.indexOf('\r\n\r\n');
  const head = snap.raw.subarray(0, Math.max(0, cut)).toString('latin1');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  return { conn, source, status, body: snap.responses[0]?.text ?? '', after: cut < 0 ? Buffer.alloc(0) : snap.raw.subarray(cut + 4) };
}

const requestRecord = (source: string, mark: number) => recordAfter(g, mark, (r) => r.source === source && (r.event === 'request' || r.event === 'tunnel.open'));

interface ConnectCase {
  name: string;
  target: string;
  auth?: 'alice' | 'none' | 'bad';
  status: number;
  reason: RegExp;
}

const connectCases: ConnectCase[] = [
  { name: '127.0.0.1:22 (an address, not a route)', target: '127.0.0.1:22', status: 404, reason: /no tcp route named "127\.0\.0\.1"/ },
  { name: '[::1]:80', target: '[::1]:80', status: 400, reason: /malformed CONNECT target/ },
  { name: 'unix:/etc/passwd', target: 'unix:/etc/passwd', status: 400, reason: /malformed CONNECT target/ },
  { name: 'nosuchroute:99999', target: 'nosuchroute:99999', status: 404, reason: /no tcp route named "nosuchroute"/ },
  { name: 'tcp/../x', target: 'tcp/../x', status: 400, reason: /malformed CONNECT target/ },
  { name: 'tcp:443/../x', target: 'tcp:443/../x', status: 400, reason: /malformed CONNECT target/ },
  { name: 'http://x/ (absolute URI)', target: 'http://x/', status: 400, reason: /malformed CONNECT target/ },
  { name: 'tcp:-1', target: 'tcp:-1', status: 400, reason: /malformed CONNECT target/ },
  { name: 'tcp:443:443', target: 'tcp:443:443', status: 400, reason: /malformed CONNECT target/ },
  { name: 'user@tcp:443', target: 'user@tcp:443', status: 400, reason: /malformed CONNECT target/ },
  { name: 'a 10 KB route name', target: `${'a'.repeat(10 * 1024)}:443`, status: 404, reason: /no tcp route named/ },
  { name: 'web:443 (route exists, no tcp protocol)', target: 'web:443', status: 404, reason: /no tcp route named "web"/ },
  { name: 'users:443 (route with {param}s, no tcp protocol)', target: 'users:443', status: 404, reason: /no tcp route named "users"/ },
  { name: 'tcp:443 without a token', target: 'tcp:443', auth: 'none', status: 401, reason: /no Authorization|bearer/i },
  { name: 'tcp:443 with a bad token', target: 'tcp:443', auth: 'bad', status: 401, reason: /does not parse|verify|invalid/i },
];

const upgradeCases: Array<{ name: string; path: string; opts: UpgradeOptions; status: number; reason: RegExp }> = [
  { name: 'missing Sec-WebSocket-Key', path: ENDPOINT, opts: { key: null }, status: 400, reason: /WebSocket handshake/ },
  { name: 'bad Sec-WebSocket-Key (not 16 bytes of base64)', path: ENDPOINT, opts: { key: 'not-a-key' }, status: 400, reason: /WebSocket handshake/ },
  { name: 'Sec-WebSocket-Version: 12', path: ENDPOINT, opts: { version: '12' }, status: 400, reason: /WebSocket handshake/ },
  { name: 'Upgrade: websocket with POST', path: ENDPOINT, opts: { method: 'POST', extra: 'Content-Length: 0\r\n' }, status: 400, reason: /WebSocket handshake/ },
  { name: 'Upgrade: h2c on the tunnel endpoint', path: ENDPOINT, opts: { upgrade: 'h2c', extra: 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n' }, status: 400, reason: /WebSocket handshake/ },
  { name: 'WebSocket upgrade on an HTTP route without the websocket protocol', path: '/web/chat', opts: { protocol: null }, status: 404, reason: /route|websocket/i },
  { name: 'Upgrade: h2c on an HTTP route', path: '/web/h2c', opts: { upgrade: 'h2c', protocol: null, key: null, version: null, extra: 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n' }, status: 400, reason: /upgrade|websocket|h2c/i },
  { name: 'Upgrade: websocket with POST on a websocket route', path: '/ws/chat', opts: { method: 'POST', protocol: null, extra: 'Content-Length: 0\r\n' }, status: 400, reason: /upgrade|websocket|GET|method/i },
];

const FOUR_MIB = 4 * 1024 * 1024;
const frameCases: Array<{ name: string; bytes: () => Buffer; code: number }> = [
  { name: 'unmasked client frame', bytes: () => frame({ opcode: 0x2, payload: Buffer.from('hello'), masked: false }), code: 1002 },
  { name: 'frame announcing more than 4 MiB', bytes: () => frame({ opcode: 0x2, declaredLength: FOUR_MIB + 1, payload: Buffer.alloc(16) }), code: 1009 },
  { name: 'invalid opcode 0x3', bytes: () => frame({ opcode: 0x3, payload: Buffer.from('x') }), code: 1002 },
  { name: 'invalid opcode 0xB (reserved control)', bytes: () => frame({ opcode: 0xb }), code: 1002 },
  { name: 'fragmented control frame (ping without FIN)', bytes: () => frame({ opcode: 0x9, fin: false, payload: Buffer.from('p') }), code: 1002 },
  { name: 'control frame with a 126-byte payload', bytes: () => frame({ opcode: 0x9, payload: Buffer.alloc(126) }), code: 1002 },
  { name: 'RSV1 bit set without an extension', bytes: () => { const f = frame({ opcode: 0x2, payload: Buffer.from('x') }); f[0] = (f[0] as number) | 0x40; return f; }, code: 1002 },
  { name: 'continuation frame with nothing to continue', bytes: () => frame({ opcode: 0x0, payload: Buffer.from('x') }), code: 1002 },
  { name: 'text frame that is not a tunnel control message', bytes: () => frame({ opcode: 0x1, payload: Buffer.from('hello upstream') }), code: 1002 },
  { name: 'text frame with invalid UTF-8', bytes: () => frame({ opcode: 0x1, payload: Buffer.from([0xff, 0xfe, 0xfd]) }), code: 1007 },
  { name: 'close frame with invalid code 999', bytes: () => closeFrame(999), code: 1002 },
  { name: 'close frame with reserved code 1005', bytes: () => closeFrame(1005), code: 1002 },
  { name: 'close frame with a 1-byte payload', bytes: () => frame({ opcode: 0x8, payload: Buffer.from([3]) }), code: 1002 },
];

beforeAll(async () => {
  g = await startHostileGateway({ extraTop: `limits:\n  tunnelsPerIdentity: ${TUNNELS_PER_IDENTITY}\n` });
});

afterAll(async () => {
  await g?.stop();
});

describe('CONNECT: targets and credentials that must not open a tunnel', () => {
  for (const c of connectCases) {
    it(`CONNECT ${c.name} -> ${c.status}, upstream untouched, audit reason`, async () => {
      g.resetUpstreams();
      const mark = auditMark(g);
      const auth = c.auth === 'none' ? '' : c.auth === 'bad' ? 'Proxy-Authorization: Bearer AAAAbad\r\n' : `Proxy-Authorization: Bearer ${g.tokens.alice}\r\n`;
      const res = await exchange(`CONNECT ${c.target} HTTP/1.1\r\nHost: ${c.target.slice(0, 100)}\r\n${auth}\r\n`);
      res.conn.socket.destroy();
      expect(res.status).toBe(c.status);
      const r = await requestRecord(res.source, mark);
      expect(r).toMatchObject({ event: 'request', decision: 'deny', status: c.status });
      expect(r?.reason).toMatch(c.reason);
      expect(JSON.stringify(r).length, 'the audit record carries at most a bounded piece of the target').toBeLessThan(2048);
      expect(g.tcpUpstream.connections).toBe(0);
      await expectStillServes(g);
    });
  }

  it('CONNECT tcp:99999 (out-of-range port): the port is ignored, the tunnel opens to the tcp route', async () => {
    g.resetUpstreams();
    const res = await exchange(`CONNECT tcp:99999 HTTP/1.1\r\nHost: tcp:99999\r\nProxy-Authorization: Bearer ${g.tokens.alice}\r\n\r\n`);
    expect(res.status).toBe(200);
    await res.conn.send('ping');
    await res.conn.waitUntil((x) => x.raw.toString().endsWith('ping'));
    res.conn.socket.destroy();
    expect(g.tcpUpstream.raw().toString()).toBe('ping');
  });

  it('CONNECT with bytes sent before the 200: forwarded exactly once, after the upstream connected', async () => {
    g.resetUpstreams();
    const res = await exchange(`CONNECT tcp:443 HTTP/1.1\r\nHost: tcp:443\r\nProxy-Authorization: Bearer ${g.tokens.alice}\r\n\r\nearly-bytes`);
    expect(res.status).toBe(200);
    await res.conn.waitUntil((x) => x.raw.toString().endsWith('early-bytes'));
    res.conn.socket.destroy();
    expect(g.tcpUpstream.raw().toString()).toBe('early-bytes');
    expect(g.tcpUpstream.connections).toBe(1);
  });

  it('CONNECT with a Content-Length body and no token: 401, the body never reaches the upstream', async () => {
    g.resetUpstreams();
    const mark = auditMark(g);
    const res = await exchange('CONNECT tcp:443 HTTP/1.1\r\nHost: tcp:443\r\nContent-Length: 11\r\n\r\nhello world');
    res.conn.socket.destroy();
    expect(res.status).toBe(401);
    expect((await requestRecord(res.source, mark))?.status).toBe(401);
    expect(g.tcpUpstream.connections).toBe(0);
    await expectStillServes(g);
  });
});

describe('WebSocket handshakes that must not open a tunnel or reach an upstream', () => {
  it('plain GET on the tunnel endpoint -> 426, upstream untouched', async () => {
    g.resetUpstreams();
    const mark = auditMark(g);
    const res = await exchange(`GET ${ENDPOINT} HTTP/1.1\r\nHost: localhost\r\n${g.auth()}\r\n`);
    res.conn.socket.destroy();
    expect(res.status).toBe(426);
    expect(JSON.parse(res.body)).toEqual({ error: 'tunnel endpoint needs a WebSocket upgrade' });
    expect((await requestRecord(res.source, mark))).toMatchObject({ decision: 'deny', status: 426 });
    expect(g.tcpUpstream.connections).toBe(0);
  });

  for (const c of upgradeCases) {
    it(`${c.name} -> ${c.status}, no 101, upstream untouched`, async () => {
      g.resetUpstreams();
      const mark = auditMark(g);
      const res = await exchange(upgradeRequest(c.path, g.auth(), c.opts));
      res.conn.socket.destroy();
      expect(res.status).toBe(c.status);
      const r = await requestRecord(res.source, mark);
      expect(r).toMatchObject({ event: 'request', decision: 'deny', status: c.status });
      expect(r?.reason).toMatch(c.reason);
      expect(g.tcpUpstream.connections + g.recorder.connections).toBe(0);
      await expectStillServes(g);
    });
  }

  it('tunnel endpoint without a subprotocol: 101 without Sec-WebSocket-Protocol (the endpoint selects it only when offered)', async () => {
    g.resetUpstreams();
    const res = await exchange(upgradeRequest(ENDPOINT, g.auth(), { protocol: null }));
    res.conn.socket.destroy();
    expect(res.status).toBe(101);
    expect(res.conn.snapshot().responses[0]?.header('sec-websocket-protocol')).toBeUndefined();
  });

  for (const [name, protocol] of [['offering only a wrong subprotocol', 'chat.v2'], ['offering two wrong subprotocols', 'chat.v2, gatehouse-tunnel.v2']] as const) {
    it(`tunnel endpoint ${name}: 400 before any upstream is opened, with its record`, async () => {
      g.resetUpstreams();
      const mark = auditMark(g);
      const res = await exchange(upgradeRequest(ENDPOINT, g.auth(), { protocol }));
      res.conn.socket.destroy();
      expect(res.status).toBe(400);
      const r = await requestRecord(res.source, mark);
      expect(r).toMatchObject({ event: 'request', decision: 'deny', status: 400 });
      expect(r?.reason).toMatch(/subprotocol gatehouse-tunnel\.v1/);
      expect(g.tcpUpstream.connections + g.recorder.connections).toBe(0);
    });
  }
});

describe('WebSocket tunnel: frames that break RFC 6455 or the tunnel protocol', () => {
  for (const c of frameCases) {
    it(`${c.name} -> close ${c.code}, nothing reaches the upstream, tunnel.close recorded`, async () => {
      g.resetUpstreams();
      const mark = auditMark(g);
      const res = await exchange(upgradeRequest(ENDPOINT, g.auth()));
      expect(res.status).toBe(101);
      await res.conn.send(c.bytes());
      const snap = await res.conn.waitUntil((x) => closeCodeIn(x.raw.subarray(x.raw.indexOf('\r\n\r\n') + 4)) !== undefined, 5000);
      const close = closeCodeIn(snap.raw.subarray(snap.raw.indexOf('\r\n\r\n') + 4));
      res.conn.socket.destroy();
      expect(close?.code).toBe(c.code);
      const closed = await recordAfter(g, mark, (r) => r.source === res.source && r.event === 'tunnel.close');
      expect(closed?.reason).toMatch(/client error|protocol|client closed/i);
      expect(closed?.bytesIn).toBe(0);
      expect(g.tcpUpstream.raw().length, 'bytes that reached the upstream').toBe(0);
      await expectStillServes(g);
    });
  }
});

describe('per-identity tunnel limit (limits.tunnelsPerIdentity = 2)', () => {
  const connect = (user: UserName) => exchange(`CONNECT tcp:443 HTTP/1.1\r\nHost: tcp:443\r\nProxy-Authorization: Bearer ${g.tokens[user]}\r\n\r\n`, user);
  const echoes = async (t: Opened, text: string) => {
    await t.conn.send(text);
    const snap = await t.conn.waitUntil((x) => x.raw.toString().endsWith(text), 3000);
    return snap.raw.toString().endsWith(text);
  };
  let open: Opened[] = [];

  const expect429 = async (what: string, bytes: string) => {
    g.resetUpstreams();
    open = [await connect('alice'), await connect('alice')];
    try {
      for (const t of open) expect((t as Opened & { status: number }).status).toBe(200);
      const mark = auditMark(g);
      const extra = await exchange(bytes);
      extra.conn.socket.destroy();
      expect(extra.status, `${what} over the limit`).toBe(429);
      const r = await requestRecord(extra.source, mark);
      expect(r).toMatchObject({ event: 'request', decision: 'deny', status: 429 });
      expect(g.tcpUpstream.connections + g.recorder.connections, 'only the two allowed tunnels reached an upstream').toBe(2);
      expect(await echoes(open[0] as Opened, 'still-0')).toBe(true);
      expect(await echoes(open[1] as Opened, 'still-1')).toBe(true);
      const bob = await connect('bob');
      expect((bob as Opened & { status: number }).status, 'another identity is unaffected').toBe(200);
      expect(await echoes(bob, 'bob')).toBe(true);
      bob.conn.socket.destroy();
    } finally {
      for (const t of open) t.conn.socket.destroy();
      await sleep(200);
    }
  };

  it('a third CONNECT tunnel -> 429; the two open ones keep carrying bytes; bob is unaffected', () =>
    expect429('CONNECT', `CONNECT tcp:443 HTTP/1.1\r\nHost: tcp:443\r\nProxy-Authorization: Bearer ${g.tokens.alice}\r\n\r\n`));

  it('a WebSocket tunnel endpoint upgrade as the third tunnel -> 429', () => expect429('WebSocket tunnel', upgradeRequest(ENDPOINT, g.auth())));

  it('a proxied WebSocket upgrade as the third tunnel -> 429', () => expect429('WebSocket upgrade', upgradeRequest('/ws/chat', g.auth(), { protocol: null })));
});
