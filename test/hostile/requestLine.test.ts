// Pipelined requests, HTTP/1.0 and the request line: each request is framed and authorized on its own,
// and whatever the parser tolerates in the request line reaches the upstream as one clean HTTP/1.1 request.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import { chunked, expectStillServes, http, parserRefuses, runHttpCase, type HttpCase, HOST_LINE as H, AUTH_LINE as A, contentLengthLine as CL, upstreamSees as ok, allowedOnWeb as allow } from './support/httpCase.ts';

let g: HostileGateway;
beforeAll(async () => {
  g = await startHostileGateway();
});
afterAll(async () => {
  await g?.stop();
});


const pipelineCases: HttpCase[] = [
  {
    name: 'two pipelined GETs, each authorized',
    send: http('GET /web/a HTTP/1.1', [H, A]) + http('GET /web/b HTTP/1.1', [H, A]),
    status: [200, 200],
    closed: false,
    upstream: [ok('GET', '/web/a'), ok('GET', '/web/b')],
    audit: [allow('/web/a'), allow('/web/b')],
  },
  {
    name: 'pipelined: the second request goes to a route the token does not allow (403)',
    send: http('GET /web/a HTTP/1.1', [H, A]) + http('GET /secret/b HTTP/1.1', [H, A]),
    status: [200, 403],
    upstream: [ok('GET', '/web/a')],
    audit: [allow('/web/a'), { status: 403, route: 'secret', path: '/secret/b' }],
  },
  {
    name: 'pipelined: the second request carries another user\'s token (admin) and is forwarded as admin',
    send: http('GET /web/a HTTP/1.1', [H, A]) + http('GET /secret/b HTTP/1.1', [H, '<AUTH:admin>']),
    status: [200, 200],
    upstream: [ok('GET', '/web/a'), { ...ok('GET', '/secret/b'), user: 'admin', route: 'secret' }],
    audit: [allow('/web/a'), { status: 200, route: 'secret', path: '/secret/b' }],
  },
  {
    name: 'pipelined: the second request has no token (401), the first still answered',
    send: http('GET /web/a HTTP/1.1', [H, A]) + http('GET /web/b HTTP/1.1', [H]),
    status: [200, 401],
    upstream: [ok('GET', '/web/a')],
    audit: [allow('/web/a'), { status: 401, path: '/web/b' }],
  },
  {
    name: 'pipelined: a refused GET without body, then an authorized one',
    send: http('GET /secret/a HTTP/1.1', [H, A]) + http('GET /web/b HTTP/1.1', [H, A]),
    status: [403, 200],
    upstream: [ok('GET', '/web/b')],
    audit: [{ status: 403, path: '/secret/a' }, allow('/web/b')],
  },
  {
    name: 'pipelined: HEAD then GET',
    send: http('HEAD /web/a HTTP/1.1', [H, A]) + http('GET /web/b HTTP/1.1', [H, A]),
    methods: ['HEAD', 'GET'],
    status: [200, 200],
    upstream: [ok('HEAD', '/web/a'), ok('GET', '/web/b')],
    audit: [{ ...allow('/web/a'), method: 'HEAD' }, allow('/web/b')],
  },
  {
    name: 'pipelined: three requests, the middle one a POST with a body',
    send: http('GET /web/a HTTP/1.1', [H, A]) + http('POST /web/b HTTP/1.1', [H, A, CL('12345')], '12345') + http('GET /web/c HTTP/1.1', [H, A]),
    status: [200, 200, 200],
    upstream: [ok('GET', '/web/a'), ok('POST', '/web/b', '12345'), ok('GET', '/web/c')],
    audit: [allow('/web/a'), allow('/web/b'), allow('/web/c')],
  },
  {
    name: 'a refused POST announcing 1 MB and sending 10 bytes: 401 with connection: close, socket closed',
    send: http('POST /web/x HTTP/1.1', [H, 'Content-Length: 1000000'], '0123456789'),
    status: [401],
    closed: true,
    upstream: [],
    audit: [{ status: 401, path: '/web/x' }],
    check: (x) => expect(x.finals[0]!.header('connection')).toBe('close'),
  },
  {
    name: 'a POST denied by policy with an unsent chunked body: 403 with connection: close, socket closed',
    send: http('POST /secret/x HTTP/1.1', [H, A, 'Transfer-Encoding: chunked'], '100\r\nabc'),
    status: [403],
    closed: true,
    upstream: [],
    audit: [{ status: 403, route: 'secret', path: '/secret/x' }],
    check: (x) => expect(x.finals[0]!.header('connection')).toBe('close'),
  },
  {
    name: 'HTTP/1.0 without keep-alive: one answer, then the gateway closes',
    send: http('GET /web/x HTTP/1.0', [H, A]),
    status: [200],
    closed: true,
    upstream: [ok('GET', '/web/x')],
    audit: [allow()],
  },
  {
    name: 'HTTP/1.0 with Connection: keep-alive: two pipelined requests on one connection',
    send: http('GET /web/a HTTP/1.0', [H, A, 'Connection: keep-alive']) + http('GET /web/b HTTP/1.0', [H, A, 'Connection: keep-alive']),
    status: [200, 200],
    closed: false,
    upstream: [ok('GET', '/web/a'), ok('GET', '/web/b')],
    audit: [allow('/web/a'), allow('/web/b')],
  },
  {
    name: 'HTTP/1.0 with a chunked body: Node decodes it, the upstream gets it re-framed, then the gateway closes',
    send: http('POST /web/x HTTP/1.0', [H, A, 'Transfer-Encoding: chunked'], chunked('hello')),
    status: [200],
    closed: true,
    upstream: [ok('POST', '/web/x', 'hello')],
    audit: [allow()],
  },
];

const requestLineCases: HttpCase[] = [
  { name: 'absolute-form target https://localhost/web/x', send: http('GET https://localhost/web/x HTTP/1.1', [H, A]), status: [400], upstream: [], audit: [{ status: 400, reason: /origin-form/ }] },
  { name: 'absolute-form target naming another host', send: http('GET http://evil.example/secret/x HTTP/1.1', [H, A]), status: [400], upstream: [], audit: [{ status: 400, reason: /origin-form/ }] },
  parserRefuses('authority-form target on a GET (the parser refuses the URL)', http('GET localhost:443 HTTP/1.1', [H, A])),
  { name: 'asterisk-form OPTIONS *', send: http('OPTIONS * HTTP/1.1', [H, A]), status: [400], upstream: [], audit: [{ status: 400, reason: /origin-form/ }] },
  parserRefuses('target without a leading slash (the parser refuses the URL)', http('GET web/x HTTP/1.1', [H, A])),
  parserRefuses('HTTP/1.2', http('GET /web/x HTTP/1.2', [H, A])),
  {
    name: 'HTTP/2.0 in an HTTP/1 request line: Node parses it as HTTP/1, the upstream gets one HTTP/1.1 request',
    send: http('GET /web/x HTTP/2.0', [H, A]),
    status: [200],
    upstream: [ok('GET', '/web/x')],
    audit: [allow()],
  },
  {
    name: 'HTTP/0.9-style request line (no version, no headers): no token, 401, upstream untouched',
    send: 'GET /web/x\r\n\r\n',
    status: [401],
    upstream: [],
    audit: [{ status: 401, path: '/web/x' }],
  },
  {
    name: 'request line without a version followed by headers: Node reads headers, one HTTP/1.1 request upstream',
    send: http('GET /web/x', [H, A]),
    status: [200],
    upstream: [ok('GET', '/web/x')],
    audit: [allow()],
  },
  parserRefuses('lowercase http/1.1', http('GET /web/x http/1.1', [H, A])),
  parserRefuses('HTTP/11', http('GET /web/x HTTP/11', [H, A])),
  parserRefuses('HTTP/1.1 followed by junk', http('GET /web/x HTTP/1.1 junk', [H, A])),
  {
    name: 'runs of spaces between the request-line parts: Node tolerates them, the upstream gets a clean line',
    send: http('GET   /web/x   HTTP/1.1', [H, A]),
    status: [200],
    upstream: [ok('GET', '/web/x')],
    audit: [allow()],
  },
  parserRefuses('tabs between the request-line parts', http('GET\t/web/x\tHTTP/1.1', [H, A])),
  parserRefuses('a space inside the target', http('GET /web/a b HTTP/1.1', [H, A])),
  parserRefuses('a NUL inside the target', http('GET /web/a\x00b HTTP/1.1', [H, A])),
  parserRefuses('lowercase method get', http('get /web/x HTTP/1.1', [H, A])),
  parserRefuses('unknown method FOO', http('FOO /web/x HTTP/1.1', [H, A])),
  parserRefuses('a 10 000-character method', http(`${'A'.repeat(10_000)} /web/x HTTP/1.1`, [H, A])),
  parserRefuses('a method containing /', http('GE/T /web/x HTTP/1.1', [H, A])),
  parserRefuses('request line ended by a bare LF, headers by CRLF', `GET /web/x HTTP/1.1\n${H}\r\n${A}\r\n\r\n`),
  {
    name: 'an empty line before the request line is ignored',
    send: '\r\n' + http('GET /web/x HTTP/1.1', [H, A]),
    status: [200],
    upstream: [ok('GET', '/web/x')],
    audit: [allow()],
  },
  {
    name: 'a known extension method (PROPFIND) is forwarded as is',
    send: http('PROPFIND /web/x HTTP/1.1', [H, A]),
    status: [200],
    upstream: [ok('PROPFIND', '/web/x')],
    audit: [{ ...allow(), method: 'PROPFIND' }],
  },
];

describe('pipelining, HTTP/1.0 and the request line (raw bytes over mTLS)', () => {
  describe('pipelining and HTTP/1.0', () => {
    for (const c of pipelineCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('request line', () => {
    for (const c of requestLineCases) it(c.name, () => runHttpCase(g, c));
  });
});

it('the gateway still serves after the whole file', async () => {
  await expectStillServes(g);
  expect(g.h.proc.exitCode).toBeNull();
});
