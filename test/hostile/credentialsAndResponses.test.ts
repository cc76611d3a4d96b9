// Expect handling before authorization, where credentials may travel (Authorization, query string) and
// what the audit file keeps of them, and which upstream response fields must not reach the client.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import { expectStillServes, http, runHttpCase, withAuth, type HttpCase, HOST_LINE as H, AUTH_LINE as A } from './support/httpCase.ts';

let g: HostileGateway;
beforeAll(async () => {
  g = await startHostileGateway();
});
afterAll(async () => {
  await g?.stop();
});


describe('Expect', () => {
  const refusedBeforeBody: HttpCase[] = [
    {
      name: 'Expect: 100-continue without a token: 401 at once, no 100, connection closed (body never read)',
      send: http('POST /web/x HTTP/1.1', [H, 'Expect: 100-continue', 'Content-Length: 5']),
      status: [401],
      closed: true,
      upstream: [],
      audit: [{ status: 401, path: '/web/x' }],
    },
    {
      name: 'Expect: 100-continue denied by policy: 403 at once, no 100, connection closed',
      send: http('POST /secret/x HTTP/1.1', [H, A, 'Expect: 100-continue', 'Content-Length: 5']),
      status: [403],
      closed: true,
      upstream: [],
      audit: [{ status: 403, route: 'secret', path: '/secret/x' }],
    },
    {
      name: 'Expect: 100-Continue (any case) without a token: 401, no 100',
      send: http('POST /web/x HTTP/1.1', [H, 'Expect: 100-Continue', 'Content-Length: 5']),
      status: [401],
      closed: true,
      upstream: [],
      audit: [{ status: 401 }],
    },
    {
      name: 'Expect: 100-continue to no route: 404, no 100',
      send: http('POST /nowhere/x HTTP/1.1', [H, A, 'Expect: 100-continue', 'Content-Length: 5']),
      status: [404],
      closed: true,
      upstream: [],
      audit: [{ status: 404 }],
    },
    {
      name: 'an unknown Expect value: 417 with an audit record',
      send: http('POST /web/x HTTP/1.1', [H, A, 'Expect: teapot', 'Content-Length: 5'], 'hello'),
      status: [417],
      upstream: [],
      audit: [{ status: 417 }],
    },
    {
      name: 'Expect: 100-continue, teapot (a list with an unknown expectation): 417',
      send: http('POST /web/x HTTP/1.1', [H, A, 'Expect: 100-continue, teapot', 'Content-Length: 5'], 'hello'),
      status: [417],
      upstream: [],
      audit: [{ status: 417 }],
    },
  ];
  for (const c of refusedBeforeBody) {
    it(c.name, async () => {
      await runHttpCase(g, {
        ...c,
        check: (x) => expect(x.responses.map((r) => r.status), 'no interim response').not.toContain(100),
      });
    });
  }

  it('Expect: 100-continue, authorized: 100 first, then the body goes up and the upstream answers 200 (no Expect upstream)', async () => {
    g.resetUpstreams();
    const conn = g.open('alice');
    await conn.send(withAuth(g, http('POST /web/x HTTP/1.1', [H, A, 'Expect: 100-continue', 'Content-Length: 5']), 'alice'));
    const interim = await conn.waitUntil((s) => s.responses.length > 0, 3000);
    expect(interim.responses.map((r) => r.status)).toEqual([100]);
    expect(g.recorder.requests).toEqual([]);
    await conn.send('hello');
    const x = await conn.finish({ expectResponses: 1 });
    expect(x.responses.map((r) => r.status)).toEqual([100, 200]);
    const [req] = await g.recorder.waitForRequests(1);
    expect(req).toMatchObject({ method: 'POST', target: '/web/x' });
    expect(req!.body.toString()).toBe('hello');
    expect(req!.all('expect')).toEqual([]);
    expect((await g.auditOf(x, 1)).map((r) => [r.status, r.decision, r.bytesIn])).toEqual([[200, 'allow', 5]]);
    await expectStillServes(g);
  });
});

describe('Authorization', () => {
  const tok = (user: 'alice' | 'bob' | 'admin') => `<AUTH:${user}>`;
  const cases: Array<HttpCase & { forwarded?: (g: HostileGateway) => string[] }> = [
    {
      name: 'Bearer on a route without forwardToken: authorized, not forwarded',
      send: http('GET /web/x HTTP/1.1', [H, A]),
      status: [200],
      upstream: [{ method: 'GET', target: '/web/x' }],
      audit: [{ status: 200, route: 'web' }],
      forwarded: () => [],
    },
    {
      name: 'Bearer on a forwardToken route: forwarded exactly once, as sent',
      send: http('GET /fwd/x HTTP/1.1', [H, A]),
      status: [200],
      upstream: [{ method: 'GET', target: '/fwd/x', route: 'fwd' }],
      audit: [{ status: 200, route: 'fwd' }],
      forwarded: (gw) => [`Bearer ${gw.tokens.alice}`],
    },
    {
      name: 'lowercase scheme "bearer" on a forwardToken route: accepted and forwarded as sent',
      send: http('GET /fwd/x HTTP/1.1', [H, `authorization: bearer ${'<TOKEN>'}`]),
      status: [200],
      upstream: [{ method: 'GET', target: '/fwd/x', route: 'fwd' }],
      audit: [{ status: 200, route: 'fwd' }],
      forwarded: (gw) => [`bearer ${gw.tokens.alice}`],
    },
    {
      name: 'two Authorization headers (alice, then admin) on the admin-only route: the first is the credential, 403',
      send: http('GET /secret/x HTTP/1.1', [H, A, tok('admin')]),
      status: [403],
      upstream: [],
      audit: [{ status: 403, route: 'secret' }],
    },
    {
      name: 'two Authorization headers on a forwardToken route: only the authorized one (the first) is forwarded',
      send: http('GET /fwd/x HTTP/1.1', [H, A, tok('admin')]),
      status: [200],
      upstream: [{ method: 'GET', target: '/fwd/x', route: 'fwd' }],
      audit: [{ status: 200, route: 'fwd' }],
      forwarded: (gw) => [`Bearer ${gw.tokens.alice}`],
    },
    { name: 'Basic credentials: 401', send: http('GET /web/x HTTP/1.1', [H, 'Authorization: Basic YWRtaW46YWRtaW4=']), status: [401], upstream: [], audit: [{ status: 401 }] },
    { name: 'Bearer followed by junk: 401', send: http('GET /web/x HTTP/1.1', [H, 'Authorization: Bearer <TOKEN> extra']), status: [401], upstream: [], audit: [{ status: 401 }] },
    { name: 'Bearer with an empty token: 401', send: http('GET /web/x HTTP/1.1', [H, 'Authorization: Bearer ']), status: [401], upstream: [], audit: [{ status: 401 }] },
    { name: 'token only in Proxy-Authorization on an HTTP route: 401', send: http('GET /web/x HTTP/1.1', [H, 'Proxy-Authorization: Bearer <TOKEN>']), status: [401], upstream: [], audit: [{ status: 401 }] },
    {
      name: 'admin\'s token presented over alice\'s certificate: forwarded as user admin, certificate alice',
      send: http('GET /secret/x HTTP/1.1', [H, tok('admin')]),
      status: [200],
      upstream: [{ method: 'GET', target: '/secret/x', route: 'secret', user: 'admin' }],
      audit: [{ status: 200, route: 'secret' }],
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      await runHttpCase(g, {
        ...c,
        send: c.send.replace(/<TOKEN>/g, g.tokens.alice),
        check: (_x, { upstream, g: gw }) => {
          if (c.forwarded) expect(upstream.requests[0]!.all('authorization')).toEqual(c.forwarded(gw));
          // Whatever happened, no token may be written to the audit log.
          const written = JSON.stringify(gw.allAuditOf(_x));
          expect(written).not.toContain(gw.tokens.alice);
          expect(written).not.toContain(gw.tokens.admin);
        },
      });
    });
  }
});

describe('credentials in the query string are redacted in the audit file', () => {
  it('a valid token only in the query string (access_token): 401, and the token is nowhere in the audit file', async () => {
    const fresh = g.mint('alice', 'check if route("web");');
    await runHttpCase(g, {
      name: 'query token',
      send: http(`GET /web/x?access_token=${fresh} HTTP/1.1`, [H]),
      status: [401],
      upstream: [],
      audit: [{ status: 401, path: '/web/x' }],
      check: (_x, { audit, g: gw }) => {
        expect(readFileSync(gw.h.auditFile, 'utf8')).not.toContain(fresh);
        expect(audit[0]!.target).toBe('/web/x?access_token=[redacted]');
      },
    });
  });

  const names = ['access_token', 'token', 'auth', 'key', 'api_key', 'apikey', 'password', 'secret', 'session', 'jwt', 'code', 'signature', 'sig', 'ACCESS_TOKEN', 'Password', 'Api_Key'];
  names.forEach((name, i) => {
    const secret = `S3cr3t${i}x${name.length}q`;
    it(`?${name}=<secret>: the upstream gets the query, the audit file only [redacted]`, async () => {
      const target = `/web/x?a=1&${name}=${secret}&b=2`;
      await runHttpCase(g, {
        name,
        send: http(`GET ${target} HTTP/1.1`, [H, A]),
        status: [200],
        upstream: [{ method: 'GET', target }],
        audit: [{ status: 200, path: '/web/x' }],
        check: (_x, { audit, g: gw }) => {
          expect(readFileSync(gw.h.auditFile, 'utf8')).not.toContain(secret);
          expect(audit[0]!.target).toBe(`/web/x?a=1&${name}=[redacted]&b=2`);
        },
      });
    });
  });
  it('a non-credential parameter is kept as sent', async () => {
    await runHttpCase(g, {
      name: 'plain',
      send: http('GET /web/x?page=2&sort=name HTTP/1.1', [H, A]),
      status: [200],
      upstream: [{ method: 'GET', target: '/web/x?page=2&sort=name' }],
      audit: [{ status: 200, path: '/web/x' }],
      check: (_x, { audit }) => expect(audit[0]!.target).toBe('/web/x?page=2&sort=name'),
    });
  });
});

describe('upstream response fields that must not reach the client', () => {
  const hops: Array<{ name: string; lines: string[]; marker: RegExp }> = [
    { name: 'Connection: x-foo and the X-Foo it names', lines: ['Connection: x-foo', 'X-Foo: upstream-hop-1'], marker: /x-foo|upstream-hop-1/i },
    { name: 'Keep-Alive', lines: ['Keep-Alive: timeout=999, max=77'], marker: /999|max=77/ },
    { name: 'Proxy-Authenticate', lines: ['Proxy-Authenticate: Basic realm="upstream-hop-3"'], marker: /proxy-authenticate|upstream-hop-3/i },
    { name: 'Proxy-Connection', lines: ['Proxy-Connection: upstream-hop-4'], marker: /proxy-connection|upstream-hop-4/i },
    { name: 'Upgrade on a 200', lines: ['Upgrade: h2c-upstream-hop-5'], marker: /^upgrade:|upstream-hop-5/im },
    { name: 'TE', lines: ['TE: trailers-upstream-hop-6'], marker: /^te:|upstream-hop-6/im },
    { name: 'Connection: close, x-bar and X-Bar', lines: ['Connection: close, x-bar', 'X-Bar: upstream-hop-8'], marker: /x-bar|upstream-hop-8/i },
  ];
  for (const hop of hops) {
    it(`${hop.name} from the upstream is not passed to the client`, async () => {
      await runHttpCase(g, {
        name: hop.name,
        hopResponse: `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n${hop.lines.join('\r\n')}\r\ncontent-length: 2\r\n\r\nok`,
        send: http('GET /hop/x HTTP/1.1', [H, A]),
        status: [200],
        upstreamOf: 'hopUpstream',
        upstream: [{ method: 'GET', target: '/hop/x', route: 'hop' }],
        audit: [{ status: 200, route: 'hop' }],
        check: (x) => {
          const head = x.raw.toString('latin1').split('\r\n\r\n')[0]!;
          expect(head).not.toMatch(hop.marker);
          expect(x.finals[0]!.text).toBe('ok');
        },
      });
    });
  }
  it('Transfer-Encoding as the upstream wrote it (gzip, chunked) is not passed through; Node decodes the chunks', async () => {
    await runHttpCase(g, {
      name: 'te',
      hopResponse: 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
      send: http('GET /hop/x HTTP/1.1', [H, A]),
      status: [200],
      upstreamOf: 'hopUpstream',
      upstream: [{ method: 'GET', target: '/hop/x', route: 'hop' }],
      audit: [{ status: 200, route: 'hop' }],
      check: (x) => {
        expect(x.raw.toString('latin1')).not.toMatch(/gzip/);
        expect(x.finals[0]!.text).toBe('ok');
      },
    });
  });
  for (const route of ['web', 'hop']) {
    it(`the client's Connection value is never echoed (${route})`, async () => {
      g.resetUpstreams();
      const x = await g.send(withAuth(g, http(`GET /${route}/x HTTP/1.1`, [H, A, 'Connection: keep-alive, x-client-hop', 'X-Client-Hop: client-hop-value']), 'alice'), { expectResponses: 1 });
      expect(x.finals.map((r) => r.status)).toEqual([200]);
      expect(x.finals[0]!.all('connection').join(',')).not.toMatch(/x-client-hop/i);
      expect(x.raw.toString('latin1')).not.toMatch(/client-hop-value/);
    });
  }
});

// Last in the file on purpose: today Node throws ERR_HTTP_TRAILER_INVALID when the forwarded response
// carries Trailer with a Content-Length, and the uncaught throw ends the whole gateway process.
describe('an upstream response with a Trailer field', () => {
  it('Trailer from the upstream is not passed to the client, and the gateway survives it', async () => {
    await runHttpCase(g, {
      name: 'trailer',
      hopResponse: 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nTrailer: X-Upstream-Hop-7\r\ncontent-length: 2\r\n\r\nok',
      send: http('GET /hop/x HTTP/1.1', [H, A]),
      status: [200],
      upstreamOf: 'hopUpstream',
      upstream: [{ method: 'GET', target: '/hop/x', route: 'hop' }],
      audit: [{ status: 200, route: 'hop' }],
      check: (x) => {
        expect(x.raw.toString('latin1').split('\r\n\r\n')[0]).not.toMatch(/^trailer:|upstream-hop-7/im);
        expect(x.finals[0]!.text).toBe('ok');
      },
    });
    expect(g.h.proc.exitCode).toBeNull();
  });
});
