// Request smuggling and framing: whatever the client writes in Connection, Content-Length,
// Transfer-Encoding, chunks or the request line, the upstream parses exactly the requests the gateway admitted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import { chunked, expectStillServes, http, parserRefuses, bodyRefused, runHttpCase, withAuth, type HttpCase, HOST_LINE as H, AUTH_LINE as A, contentLengthLine as CL, upstreamSees as ok, allowedOnWeb as allow } from './support/httpCase.ts';

let g: HostileGateway;
beforeAll(async () => {
  g = await startHostileGateway();
});
afterAll(async () => {
  await g?.stop();
});

/** What an attacker hides in a body: a request for the admin-only route claiming to be admin. */
const SMUGGLED = 'GET /secret/only-admin HTTP/1.1\r\nHost: localhost\r\nX-Gatehouse-User: admin\r\n\r\n';

const connectionHeaderCases: HttpCase[] = [
  {
    name: 'the issue: Connection: content-length with a smuggled admin request in the body of a GET',
    send: http('GET /web/x HTTP/1.1', [H, A, 'Connection: content-length', CL(SMUGGLED)], SMUGGLED),
    status: [200],
    closed: false,
    upstream: [ok('GET', '/web/x', SMUGGLED)],
    audit: [allow()],
  },
  {
    name: 'Connection: content-length on a POST',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Connection: content-length', CL(SMUGGLED)], SMUGGLED),
    status: [200],
    upstream: [ok('POST', '/web/x', SMUGGLED)],
    audit: [allow()],
  },
  {
    name: 'Connection: Content-Length (capitalized)',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Connection: Content-Length', CL(SMUGGLED)], SMUGGLED),
    status: [200],
    upstream: [ok('POST', '/web/x', SMUGGLED)],
    audit: [allow()],
  },
  ...['GET', 'DELETE', 'OPTIONS', 'POST'].map<HttpCase>((method) => ({
    name: `Connection: transfer-encoding on a chunked ${method} holding a smuggled request`,
    send: http(`${method} /web/x HTTP/1.1`, [H, A, 'Connection: transfer-encoding', 'Transfer-Encoding: chunked'], chunked(SMUGGLED)),
    status: [200],
    closed: false,
    upstream: [ok(method, '/web/x', SMUGGLED)],
    audit: [{ ...allow(), method }],
  })),
  {
    name: 'two Connection headers (keep-alive, then content-length)',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Connection: keep-alive', 'Connection: content-length', CL(SMUGGLED)], SMUGGLED),
    status: [200],
    upstream: [ok('POST', '/web/x', SMUGGLED)],
    audit: [allow()],
  },
  {
    name: 'Connection: close, content-length: one request upstream, then the gateway closes',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Connection: close, content-length', CL(SMUGGLED)], SMUGGLED),
    status: [200],
    closed: true,
    upstream: [ok('POST', '/web/x', SMUGGLED)],
    audit: [allow()],
  },
  {
    name: 'Connection: keep-alive, transfer-encoding, content-length on a chunked POST',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Connection: keep-alive, transfer-encoding, content-length', 'Transfer-Encoding: chunked'], chunked(SMUGGLED)),
    status: [200],
    upstream: [ok('POST', '/web/x', SMUGGLED)],
    audit: [allow()],
  },
  {
    name: 'Connection: content-length, then a second pipelined request (each framed and authorized on its own)',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Connection: content-length', CL('abc')], 'abc') + http('GET /web/y HTTP/1.1', [H, A]),
    status: [200, 200],
    upstream: [ok('POST', '/web/x', 'abc'), ok('GET', '/web/y')],
    audit: [allow(), allow('/web/y')],
  },
];

const teCases: HttpCase[] = [
  parserRefuses('CL.TE: Content-Length then Transfer-Encoding: chunked', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 6', 'Transfer-Encoding: chunked'], '0\r\n\r\nG')),
  parserRefuses('TE.CL: Transfer-Encoding: chunked then Content-Length', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked', 'Content-Length: 3'], '8\r\nSMUGGLED\r\n0\r\n\r\n')),
  parserRefuses('Transfer-Encoding: xchunked', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: xchunked'], chunked('abc'))),
  parserRefuses('Transfer-Encoding: xchunked with Content-Length', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 4', 'Transfer-Encoding: xchunked'], '0\r\n\r\n')),
  parserRefuses('Transfer-Encoding: chunked, identity (chunked not last)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked, identity'], chunked('abc'))),
  parserRefuses('Transfer-Encoding: chunked and a second Transfer-Encoding: identity', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked', 'Transfer-Encoding: identity'], chunked('abc'))),
  parserRefuses('Transfer-Encoding: "chunked" (quoted)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: "chunked"'], chunked('abc'))),
  parserRefuses('Transfer-Encoding with a vertical tab before chunked', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding:\x0bchunked'], chunked('abc'))),
  parserRefuses('Transfer-Encoding\\n : chunked (bare LF inside the field name line)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding\n : chunked'], chunked('abc'))),
  parserRefuses('Transfer-Encoding : chunked (whitespace before the colon)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding : chunked'], chunked('abc'))),
  parserRefuses('Transfer-Encoding folded onto a continuation line (obs-fold)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding:', ' chunked'], chunked('abc'))),
  parserRefuses('obs-fold in an ordinary header', http('GET /web/x HTTP/1.1', [H, A, 'X-Note: a', ' b'])),
  {
    name: 'Transfer-Encoding:  chunked with leading spaces is plain OWS: chunked, forwarded re-framed',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding:   chunked'], chunked('hello')),
    status: [200],
    upstream: [ok('POST', '/web/x', 'hello')],
    audit: [allow()],
  },
  parserRefuses('Transfer-Encoding:<tab>chunked<tab> (Node refuses the trailing tab)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding:\tchunked\t'], chunked('hello'))),
  {
    name: 'Transfer-Encoding: CHUNKED (codings are case-insensitive)',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: CHUNKED'], chunked('hello')),
    status: [200],
    upstream: [ok('POST', '/web/x', 'hello')],
    audit: [allow()],
  },
  {
    // The parser accepts it (chunked is final), but the gateway cannot restate a coding it does not
    // apply: RFC 9112 6.1 answers an unsupported transfer coding with 501.
    name: 'Transfer-Encoding: identity, chunked (a coding other than chunked) -> 501, upstream untouched',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: identity, chunked'], chunked('hello')),
    status: [501],
    closed: true,
    upstream: [],
    audit: [{ status: 501, decision: 'deny', reason: /transfer coding/ }],
  },
  parserRefuses('Transfer-Encoding: chunked twice in two headers (chunked applied twice)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], chunked('hello'))),
  parserRefuses('Transfer-Encoding: chunked, chunked in one header', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked, chunked'], chunked('hello'))),
  {
    name: 'Transfer_Encoding: chunked (underscore) is not framing: Content-Length frames, the header is dropped',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Transfer_Encoding: chunked', CL('0\r\n\r\n')], '0\r\n\r\n'),
    status: [200],
    upstream: [ok('POST', '/web/x', '0\r\n\r\n')],
    audit: [allow()],
  },
];

const clCases: HttpCase[] = [
  parserRefuses('two differing Content-Length headers', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 3', 'Content-Length: 5'], 'hello')),
  parserRefuses('two equal Content-Length headers', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 5', 'Content-Length: 5'], 'hello')),
  parserRefuses('Content-Length: 5, 5 (a list)', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 5, 5'], 'hello')),
  parserRefuses('Content-Length: +5', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: +5'], 'hello')),
  parserRefuses('Content-Length: 0x5', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 0x5'], 'hello')),
  parserRefuses('Content-Length: 5 5', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 5 5'], 'hello')),
  parserRefuses('Content-Length: -1', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: -1'], 'hello')),
  parserRefuses('Content-Length: 5.0', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 5.0'], 'hello')),
  parserRefuses('Content-Length: 1e1', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 1e1'], 'hello')),
  parserRefuses('Content-Length: (empty)', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length:'], 'hello')),
  parserRefuses('Content-Length: 99999999999999999999999 (overflows 64 bits)', http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 99999999999999999999999'], 'hello')),
  {
    name: 'Content-Length: 00005 (leading zeros) is 5',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 00005'], 'hello'),
    status: [200],
    closed: false,
    upstream: [ok('POST', '/web/x', 'hello')],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.requests[0]!.all('content-length')).toEqual(['5']),
  },
  {
    name: 'Content-Length shorter than the bytes sent: the rest is the next request, authorized on its own (401)',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Content-Length: 3'], 'abc' + SMUGGLED),
    status: [200, 401],
    upstream: [ok('POST', '/web/x', 'abc')],
    audit: [allow(), { status: 401, path: '/secret/only-admin' }],
  },
];

const chunkCases: HttpCase[] = [
  bodyRefused('chunk size ffffffffffffffffff (overflows 64 bits)', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], 'ffffffffffffffffff\r\nhello\r\n0\r\n\r\n')),
  bodyRefused('chunk size -5', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '-5\r\nhello\r\n0\r\n\r\n')),
  bodyRefused('chunk size 0x5', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '0x5\r\nhello\r\n0\r\n\r\n')),
  bodyRefused('chunk size zz', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], 'zz\r\nhello\r\n0\r\n\r\n')),
  bodyRefused('chunk extension holding a bare CR', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '5;a=\rb\r\nhello\r\n0\r\n\r\n')),
  bodyRefused('chunk extension holding a bare LF', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '5;a=\nb\r\nhello\r\n0\r\n\r\n')),
  bodyRefused('chunk data not followed by CRLF', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '5\r\nhelloXX0\r\n\r\n')),
  bodyRefused('chunks framed by bare LF', http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '5\nhello\n0\n\n')),
  {
    name: 'a chunk extension (name=value) is accepted and not forwarded',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '5;name=value\r\nhello\r\n0\r\n\r\n'),
    status: [200],
    upstream: [ok('POST', '/web/x', 'hello')],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.raw().toString('latin1')).not.toContain('name=value'),
  },
  {
    name: 'a trailer field in a chunked body is not forwarded as a header',
    send: http('POST /web/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\nX-Gatehouse-User: admin\r\n\r\n'),
    status: [200],
    upstream: [ok('POST', '/web/x', 'hello')],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.raw().toString('latin1')).not.toMatch(/admin/),
  },
];

describe('request smuggling and framing (raw bytes over mTLS)', () => {
  describe('Connection naming framing headers', () => {
    for (const c of connectionHeaderCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('Transfer-Encoding', () => {
    for (const c of teCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('Content-Length', () => {
    for (const c of clCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('chunks', () => {
    for (const c of chunkCases) it(c.name, () => runHttpCase(g, c));
  });
});

/** A smuggle attempt from alice, then bob's request: on a pooled upstream connection, bob's must stand alone. */
const desyncAttempts: Array<{ name: string; smuggle: string; aliceBody: string }> = [
  {
    name: 'Connection: content-length body ending in an unfinished request prefix',
    smuggle: 'GET /secret/only-admin HTTP/1.1\r\nX-Gatehouse-User: admin\r\nX-Ignore: ',
    aliceBody: '',
  },
  {
    name: 'Connection: transfer-encoding chunked body ending in an unfinished request prefix',
    smuggle: 'POST /secret/only-admin HTTP/1.1\r\nX-Gatehouse-User: admin\r\nContent-Length: 200\r\n\r\n',
    aliceBody: 'chunked',
  },
];

describe('cross-user desync on the pooled upstream connection', () => {
  for (const d of desyncAttempts) {
    it(`${d.name}: bob's next request arrives as its own request with bob's identity`, async () => {
      g.resetUpstreams();
      const aliceReq =
        d.aliceBody === 'chunked'
          ? http('POST /web/alice HTTP/1.1', [H, A, 'Connection: transfer-encoding', 'Transfer-Encoding: chunked'], chunked(d.smuggle))
          : http('POST /web/alice HTTP/1.1', [H, A, 'Connection: content-length', CL(d.smuggle)], d.smuggle);
      const alice = await g.send(withAuth(g, aliceReq, 'alice'), { as: 'alice', expectResponses: 1 });
      const bob = await g.send(withAuth(g, http('GET /web/bob HTTP/1.1', [H, A]), 'bob'), { as: 'bob', expectResponses: 1 });
      expect(alice.finals.map((r) => r.status)).toEqual([200]);
      expect(bob.finals.map((r) => r.status)).toEqual([200]);
      const reqs = await g.recorder.waitForRequests(2, 2000);
      expect(reqs.map((r) => ({ method: r.method, target: r.target, body: r.body.toString('latin1'), user: r.all('x-gatehouse-user') }))).toEqual([
        { method: 'POST', target: '/web/alice', body: d.smuggle, user: ['alice'] },
        { method: 'GET', target: '/web/bob', body: '', user: ['bob'] },
      ]);
      expect(reqs[1]!.all('x-gatehouse-client-fingerprint')).toEqual([g.certs.bob.fingerprint]);
      expect(g.recorder.leftover()).toBe(0);
      expect(g.recorder.parseErrors).toEqual([]);
      expect((await g.auditOf(alice, 1)).map((r) => r.status)).toEqual([200]);
      expect((await g.auditOf(bob, 1)).map((r) => r.status)).toEqual([200]);
    });
  }
});

describe('a bad chunk after the request was admitted and forwarded', () => {
  const badTails = [
    { name: 'invalid chunk size', tail: 'zz\r\n' },
    { name: 'chunk data longer than its size', tail: '3\r\nabcdef\r\n' },
  ];
  for (const t of badTails) {
    it(`${t.name}: audit says 400 malformed body (not allow 200), upstream parses nothing, the connection closes`, async () => {
      g.resetUpstreams();
      const conn = g.open('alice');
      await conn.send(withAuth(g, http('POST /web/late HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '5\r\nhello\r\n'), 'alice'));
      // Wait until the gateway has admitted the request and started forwarding it.
      const until = Date.now() + 3000;
      while (g.recorder.raw().length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      expect(g.recorder.raw().toString('latin1')).toMatch(/^POST \/web\/late HTTP\/1\.1\r\n/);
      await conn.send(t.tail);
      const x = await conn.finish({ untilClosed: true, timeoutMs: 4000 });
      expect(x.closedByGateway).toBe(true);
      expect(x.finals.map((r) => r.status)).toEqual([400]);
      await new Promise((r) => setTimeout(r, 100));
      expect(g.recorder.requests).toEqual([]);
      const audit = await g.auditOf(x, 1);
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({ status: 400, route: 'web', path: '/web/late' });
      expect(audit[0]!.reason).toMatch(/malformed/i);
      expect(audit[0]!.reason).toMatch(/body|chunk/i);
      await expectStillServes(g);
    });
  }
});

it('the gateway still serves after the whole file', async () => {
  await expectStillServes(g);
  expect(g.h.proc.exitCode).toBeNull();
});
