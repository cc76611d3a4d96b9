// Cookies across the gateway: an upstream cannot set a cookie for other hosts (Domain is stripped: each
// service is its own host, no cookie tossing) nor plant the gateway's own cookies in any spelling a
// browser accepts, and the gateway's cookies never reach an upstream in any spelling either.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import { http, runHttpCase, withAuth, HOST_LINE as H, AUTH_LINE as A } from './support/httpCase.ts';
import { upgradeRequest } from './support/wsRaw.ts';

let g: HostileGateway;
beforeAll(async () => {
  g = await startHostileGateway();
});
afterAll(async () => {
  await g?.stop();
});

/** Runs one request to `hop`, whose upstream answers with these Set-Cookie values; returns what the client got. */
async function setCookiesFromUpstream(values: string[]): Promise<string[]> {
  let received: string[] = [];
  await runHttpCase(g, {
    name: 'set-cookie',
    hopResponse: `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n${values.map((v) => `Set-Cookie: ${v}\r\n`).join('')}content-length: 2\r\n\r\nok`,
    send: http('GET /hop/x HTTP/1.1', [H, A]),
    status: [200],
    upstreamOf: 'hopUpstream',
    upstream: [{ method: 'GET', target: '/hop/x', route: 'hop' }],
    audit: [{ status: 200, route: 'hop' }],
    check: (x) => {
      received = x.finals[0]!.all('set-cookie');
    },
  });
  return received;
}

describe('Set-Cookie from an upstream', () => {
  it('never carries Domain (cookie tossing onto other users\' service hosts), in any spelling', async () => {
    const got = await setCookiesFromUpstream([
      'app1=1; Domain=apps.example; Path=/',
      'app2=2; domain=.apps.example',
      'app3=3; DOMAIN = apps.example ; Secure',
      'app4=4;Domain=apps.example',
      'app5=5; Path=/; Domain=apps.example; Domain=other.example; HttpOnly',
      'app6=6; Domain',
      'app7=7; Path=/x; Max-Age=60',
    ]);
    expect(got).toHaveLength(7);
    for (const value of got) expect(value, value).not.toMatch(/domain/i);
    // Everything else the application said is kept as it said it.
    expect(got).toEqual(['app1=1; Path=/', 'app2=2', 'app3=3; Secure', 'app4=4', 'app5=5; Path=/; HttpOnly', 'app6=6', 'app7=7; Path=/x; Max-Age=60']);
  });

  const planted = [
    '__Host-gatehouse-session=planted; Path=/; Secure',
    '__host-gatehouse-session=planted; Path=/; Secure',
    '__HOST-GATEHOUSE-SESSION=planted; Path=/; Secure',
    '__Host-Gatehouse-Session=planted; Path=/; Secure',
    '=__Host-gatehouse-session=planted; Path=/; Secure',
    '= __Host-gatehouse-session=planted; Path=/; Secure',
    '__Host-gatehouse-session =planted; Path=/; Secure',
    '__Host-gatehouse-session; Path=/; Secure',
    '__Host-gatehouse-other=planted; Path=/; Secure',
  ];
  for (const value of planted) {
    it(`cannot plant the gateway's cookie: ${JSON.stringify(value)}`, async () => {
      const got = await setCookiesFromUpstream([value, 'kept=1; Path=/']);
      expect(got).toEqual(['kept=1; Path=/']);
    });
  }
});

describe('Set-Cookie on an upstream\'s answer to a WebSocket upgrade', () => {
  it('loses Domain and never sets the gateway\'s cookie there either', async () => {
    g.resetUpstreams();
    g.recorder.respondWith(() => 'HTTP/1.1 302 Found\r\nLocation: /ws/login\r\nSet-Cookie: app=1; Domain=apps.example; Path=/\r\nSet-Cookie: =__Host-gatehouse-session=planted; Path=/; Secure\r\nSet-Cookie: __HOST-gatehouse-session=planted; Path=/; Secure\r\ncontent-length: 0\r\n\r\n');
    const x = await g.send(upgradeRequest('/ws/chat', withAuth(g, `${A}\r\n`, 'alice'), { protocol: null }), { expectResponses: 1 });
    g.recorder.respondWith(undefined);
    expect(x.finals.map((r) => r.status)).toEqual([302]);
    expect(x.finals[0]!.all('set-cookie')).toEqual(['app=1; Path=/']);
  });
});

describe('Cookie towards an upstream', () => {
  const spellings = [
    'a=1; __host-gatehouse-session=MARK; b=2',
    'a=1; __HOST-GATEHOUSE-SESSION=MARK; b=2',
    'a=1; =__Host-gatehouse-session=MARK; b=2',
    'a=1;__Host-gatehouse-session=MARK;b=2',
    'a=1;  __Host-gatehouse-session =MARK; b=2',
    'a=1; __Host-gatehouse-session=MARK; b=2',
    'a=1; __Host-Gatehouse-Other=MARK; b=2',
  ];
  for (const cookie of spellings) {
    it(`the gateway's cookie never reaches the upstream: ${JSON.stringify(cookie)}`, async () => {
      await runHttpCase(g, {
        name: 'cookie',
        send: http('GET /web/x HTTP/1.1', [H, A, `Cookie: ${cookie}`]),
        status: [200],
        upstream: [{ method: 'GET', target: '/web/x' }],
        audit: [{ status: 200, route: 'web' }],
        check: (_x, { upstream }) => {
          expect(upstream.raw().toString('latin1')).not.toContain('MARK');
          expect(upstream.requests[0]!.all('cookie').join('; ').replace(/\s/g, '')).toBe('a=1;b=2');
        },
      });
    });
  }
  it('a Cookie holding only the gateway\'s cookie in another case is not forwarded at all', async () => {
    await runHttpCase(g, {
      name: 'cookie-only',
      send: http('GET /web/x HTTP/1.1', [H, A, 'Cookie: __HOST-gatehouse-session=MARK']),
      status: [200],
      upstream: [{ method: 'GET', target: '/web/x' }],
      audit: [{ status: 200, route: 'web' }],
      check: (_x, { upstream }) => expect(upstream.requests[0]!.all('cookie')).toEqual([]),
    });
  });
});
