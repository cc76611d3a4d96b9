// Regression tests for request smuggling past authorization and for hop-by-hop headers: raw bytes
// over mTLS to a real gateway, and a real node:http upstream whose parsed requests are the oracle.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:tls';
import { join } from 'node:path';
import { mkdirSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: string;
}

let h: Harness;
let upstream: Server;
let seen: Seen[] = [];
let alice: TestClientCertificate;
let bob: TestClientCertificate;
let aliceToken: string;
let bobToken: string;

const routes = `  - name: web
    path: /web/
    upstream: unix:run/shared.sock
    policy: |
      allow if user($u);
  - name: secret
    path: /secret/
    upstream: unix:run/shared.sock
    policy: |
      allow if user("admin");
`;

/** Sends `raw` on one mTLS connection and returns everything the gateway answered until it closed or went quiet. */
function rawExchange(client: TestClientCertificate, raw: string, quietMs = 700): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: h.port, servername: 'localhost', ca: h.pki.caCert, cert: client.cert, key: client.key });
    let out = '';
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(out);
    };
    const quiet = () => {
      clearTimeout(timer);
      timer = setTimeout(done, quietMs);
    };
    socket.once('secureConnect', () => {
      socket.write(raw);
      quiet();
    });
    socket.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      quiet();
    });
    socket.once('end', done);
    socket.once('error', (err) => (out ? done() : reject(err)));
  });
}

const statuses = (answer: string) => [...answer.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));

beforeAll(async () => {
  h = await startHarness({ routes });
  alice = await h.pki.client('alice');
  bob = await h.pki.client('bob');
  const mint = (user: string) => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()};`);
  aliceToken = mint('alice');
  bobToken = mint('bob');
  const path = join(h.dir, 'run', 'shared.sock');
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  rmSync(path, { force: true });
  upstream = createServer((req, res) => {
    let body = '';
    req.setEncoding('latin1');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2, connection: 'x-upstream-private', 'x-upstream-private': 'leak', 'keep-alive': 'timeout=5' }).end('ok');
    });
  });
  await new Promise<void>((ok) => upstream.listen(path, ok));
});

afterAll(async () => {
  upstream?.close();
  await h?.stop();
});

beforeEach(() => {
  seen = [];
});

const smuggled = 'GET /secret/only-admin HTTP/1.1\r\nHost: localhost\r\nX-Gatehouse-User: admin\r\nX-Gatehouse-Route: secret\r\nConnection: close\r\n\r\n';

describe('request smuggling past authorization', () => {
  it('Connection: content-length cannot unframe the body into a second upstream request', async () => {
    const answer = await rawExchange(alice, `GET /web/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${aliceToken}\r\nConnection: content-length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
    expect(statuses(answer)).toEqual([200]);
    expect(seen.map((s) => s.url)).toEqual(['/x']);
    expect(seen[0]?.body).toBe(smuggled);
    expect(seen[0]?.headers['content-length']).toBe(String(smuggled.length));
    expect(seen[0]?.headers['x-gatehouse-user']).toBe('alice');
  });

  it('Connection: transfer-encoding cannot unframe a chunked DELETE', async () => {
    const chunk = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
    const answer = await rawExchange(alice, `DELETE /web/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${aliceToken}\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n${chunk}`);
    expect(statuses(answer)).toEqual([200]);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['DELETE /x']);
    expect(seen[0]?.body).toBe(smuggled);
  });

  it('two Connection headers naming the framing cannot unframe the body', async () => {
    const answer = await rawExchange(alice, `GET /web/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${aliceToken}\r\nConnection: keep-alive\r\nConnection: content-length, transfer-encoding\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
    expect(statuses(answer)).toEqual([200]);
    expect(seen.map((s) => s.url)).toEqual(['/x']);
    expect(seen[0]?.body).toBe(smuggled);
  });

  it("a smuggled request cannot swallow the next user's request on the pooled upstream connection", async () => {
    const swallowing = 'POST /web/steal HTTP/1.1\r\nHost: localhost\r\nContent-Length: 400\r\n\r\n';
    await rawExchange(alice, `GET /web/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${aliceToken}\r\nConnection: content-length\r\nContent-Length: ${swallowing.length}\r\n\r\n${swallowing}`);
    const answer = await rawExchange(bob, `GET /web/bobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${bobToken}\r\nConnection: close\r\n\r\n`);
    expect(statuses(answer)).toEqual([200]);
    expect(seen.map((s) => s.url)).toEqual(['/x', '/bobs']);
    expect(seen[1]?.headers['x-gatehouse-user']).toBe('bob');
    const records = h.audit().filter((r) => r.event === 'request' && r.route === 'secret');
    expect(records).toEqual([]);
  });
});

describe('hop-by-hop headers (RFC 9110 7.6.1)', () => {
  it('the upstream never sees Connection, the fields it names, or other hop-by-hop fields', async () => {
    const answer = await rawExchange(alice, [
      'GET /web/hop HTTP/1.1', 'Host: localhost', `Authorization: Bearer ${aliceToken}`,
      'Connection: X-Gatehouse-User, Authorization, x-private', 'X-Private: 1', 'TE: trailers', 'Keep-Alive: timeout=5',
      'Proxy-Connection: keep-alive', 'Upgrade: h2c', 'Trailer: x-t', 'True-Client-IP: 10.9.9.9', 'X-Auth-Request-User: admin',
      'Client-IP: 10.9.9.9', 'X-Forwarded-Server: evil', 'Expect-CT: x', '', '',
    ].join('\r\n'));
    expect(statuses(answer)).toEqual([200]);
    const got = seen[0];
    expect(got).toBeDefined();
    for (const name of ['connection', 'x-private', 'te', 'keep-alive', 'proxy-connection', 'upgrade', 'trailer', 'true-client-ip', 'x-auth-request-user', 'client-ip', 'x-forwarded-server']) {
      // node:http adds its own `connection: keep-alive` towards a keep-alive upstream; the client's value must not appear.
      if (name === 'connection') expect(String(got?.headers.connection ?? 'keep-alive').toLowerCase()).toBe('keep-alive');
      else expect(got?.headers[name], name).toBeUndefined();
    }
    expect(got?.headers['x-gatehouse-user']).toBe('alice');
    expect(got?.headers['expect-ct']).toBe('x');
  });

  it("the client never sees the upstream's hop-by-hop fields, nor its own Connection value echoed", async () => {
    const answer = await rawExchange(alice, `GET /web/resp HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${aliceToken}\r\nConnection: X-Echo-Me\r\n\r\n`);
    expect(statuses(answer)).toEqual([200]);
    const head = answer.slice(0, answer.indexOf('\r\n\r\n')).toLowerCase();
    expect(head).not.toContain('x-upstream-private');
    expect(head).not.toContain('x-echo-me');
    expect(head).not.toContain('timeout=5');
  });
});
