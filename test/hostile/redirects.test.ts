// Open redirects: `next` of a sign-in, the portal's hand-off to a service's own origin, the landing page
// on that origin and the sign-in redirect of a navigation never send a browser anywhere but the gateway's
// own origins, whatever spelling of another site `next` uses (the attacker's tricks on URL parsers).
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../../src/demo/echoService.ts';
import { curlReply, inOneHour, mintRaw, startHarness, type CurlReply, type Harness } from '../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../support/pki.ts';

const routes = `  - name: web
    path: /web/
    stripPrefix: false
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
  - name: services
    host: "{service}--{user}.apps.test"
    stripPrefix: false
    upstream: unix:run/{user}-{service}.sock
    policy: |
      allow if user($u), param("user", $u);
`;

let h: Harness;
let alice: TestClientCertificate;
let services: Server[] = [];
/** alice's service on its own origin (host:port), resolved to the gateway by curl. */
let service: string;
let gateway: string;

const token = () => mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
const resolve = () => ['--resolve', `${service}:127.0.0.1`, '--resolve', `evil.example:${h.port}:127.0.0.1`];

function signIn(next: string, args: string[] = []): Promise<CurlReply> {
  return curlReply(h, alice, '/.well-known/gatehouse/session', [...resolve(), '--data-urlencode', `token=${token()}`, '--data-urlencode', `next=${next}`, ...args]);
}

/** Decodes the numeric character references the gateway's pages use. */
const unescape = (html: string) => html.replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n))).replace(/&amp;/g, '&');

/** A URL the gateway sent a browser to stays on `origin`: no scheme-relative or backslash form, and resolved there it is there. */
function expectStaysOn(url: string, origin: string, what: string): void {
  expect(url, `${what}: ${url}`).not.toMatch(/^\s*(\/\/|\/\\|\\)/);
  // eslint-disable-next-line no-control-regex
  expect(url, `${what}: ${url}`).not.toMatch(/[\\\u0000-\u0020\u007f]/);
  expect(new URL(url, origin).origin, `${what}: ${url}`).toBe(origin);
}

/** Every URL of a gateway page: meta refresh, links, form actions. */
function pageUrls(html: string): string[] {
  const found = [...html.matchAll(/(?:url=|href="|action=")([^"]*)/gi)].map((m) => unescape(m[1] as string));
  return found;
}

beforeAll(async () => {
  h = await startHarness({ routes, extraTop: 'browser:\n  portalHost: localhost\n', serverNames: ['*.apps.test', 'evil.example'] });
  alice = await h.pki.client('alice');
  mkdirSync(join(h.dir, 'run'), { recursive: true });
  services = [await startEchoService(join(h.dir, 'run', 'web.sock')), await startEchoService(join(h.dir, 'run', 'alice-app.sock'))];
  service = `app--alice.apps.test:${h.port}`;
  gateway = `https://localhost:${h.port}`;
}, 60_000);

afterAll(async () => {
  for (const s of services) s.close();
  await h?.stop();
});

describe('a sign-in refuses `next` outside the gateway\'s own origins (400, no cookie, no Location)', () => {
  const S = () => service;
  const P = () => String(h.port);
  const hostile: Array<[string, () => string]> = [
    ['another host, path of a route without host: (the reported case)', () => 'https://evil.example/web/x'],
    ['another host on the gateway\'s port', () => `https://evil.example:${P()}/web/x`],
    ['upper-case scheme and host', () => 'HTTPS://EVIL.EXAMPLE/web/x'],
    ['scheme-relative //', () => '//evil.example/web/x'],
    ['scheme-relative ///', () => '///evil.example/web/x'],
    ['/\\ (browsers read \\ as /)', () => '/\\evil.example/web/x'],
    ['\\\\', () => '\\\\evil.example/web/x'],
    ['https: without slashes', () => 'https:evil.example/web/x'],
    ['https:/ with one slash', () => 'https:/evil.example/web/x'],
    ['https:\\\\', () => 'https:\\\\evil.example/web/x'],
    ['tab inside //', () => '/\t/evil.example/web/x'],
    ['newline inside //', () => '/\n/evil.example/web/x'],
    ['leading space', () => ' //evil.example/web/x'],
    ['userinfo: own host as user, evil as host', () => `https://${S()}@evil.example/web/x`],
    ['userinfo: evil as user, own host', () => `https://evil.example@${S()}/`],
    ['empty userinfo', () => `https://@${S()}/`],
    ['encoded // at the start', () => '/%2F%2Fevil.example/web/x'],
    ['encoded /\\ at the start', () => '/%2f%5cevil.example/web/x'],
    ['encoded // on the service host', () => `https://${S()}/%2F%2Fevil.example/x`],
    ['encoded everything', () => '%2F%2Fevil.example/web/x'],
    ['javascript:', () => 'javascript:alert(1)'],
    ['JavaScript: mixed case', () => 'JavaScript:alert(1)'],
    ['java<tab>script:', () => 'java\tscript:alert(1)'],
    ['data:', () => 'data:text/html,<script>alert(1)</script>'],
    ['http: on the service host', () => `http://${S()}/`],
    ['trailing dot on another host', () => 'https://evil.example./web/x'],
    ['trailing dot on the service host', () => `https://app--alice.apps.test.:${P()}/`],
    ['a host under the service host', () => `https://app--alice.apps.test.evil.example:${P()}/`],
    ['IDN lookalike of the service host', () => `https://app--alice.\u0430pps.test:${P()}/`],
    ['punycode host', () => 'https://xn--80ak6aa92e.com/web/x'],
    ['service host on another port', () => 'https://app--alice.apps.test:1/'],
    ['service host on the default port', () => 'https://app--alice.apps.test/'],
    ['a path climbing above the root on the service host', () => `https://${S()}/%2e%2e/%2e%2e/x`],
    ['.. at the root then // (the router refuses climbing above the root)', () => '/..//evil.example'],
    ['.. at the root then // on the service host', () => `https://${S()}/..//evil.example/phish`],
  ];
  for (const [name, next] of hostile) {
    it(name, async () => {
      const reply = await signIn(next());
      expect(reply.status, JSON.stringify(next())).toBe(400);
      expect(reply.headers['set-cookie']).toBeUndefined();
      expect(reply.headers.location).toBeUndefined();
    });
  }
});

describe('what a sign-in accepts lands on the gateway\'s own origin, normalized like the router', () => {
  const sameOrigin: Array<[string, string, string]> = [
    ['a plain path', '/web/x?y=1', '/web/x?y=1'],
    ['.. then //', '/web/..//evil.example/x', '/evil.example/x'],
    ['./ then //', '/.//evil.example', '/evil.example'],
    ['encoded .. then //', '/web/%2e%2e//evil.example', '/evil.example'],
  ];
  for (const [name, next, expected] of sameOrigin) {
    it(name, async () => {
      const reply = await signIn(next);
      expect(reply.status).toBe(303);
      const location = reply.headers.location?.[0] ?? '';
      expectStaysOn(location, gateway, 'Location');
      expect(location).toBe(expected);
    });
  }

  it('the own origin spelled out is a path here', async () => {
    const reply = await signIn(`https://localhost:${h.port}//evil.example/web`);
    expect(reply.status).toBe(303);
    expect(reply.headers.location).toEqual(['/evil.example/web']);
  });

  for (const [name, path, landing] of [
    ['// after the service host (the reported case)', '//evil.example/phish', '/evil.example/phish'],
    ['//// after the service host', '////evil.example/phish', '/evil.example/phish'],
    ['a query and fragment kept', '/x?y=1#frag', '/x?y=1#frag'],
  ] as const) {
    it(`a service's origin: the hand-off and its landing page stay there (${name})`, async () => {
      const origin = `https://${service}`;
      const reply = await signIn(`${origin}${path}`);
      expect(reply.status).toBe(303);
      const location = reply.headers.location?.[0] ?? '';
      expectStaysOn(location, origin, 'hand-off Location');
      expect(new URL(location).pathname).toBe('/.well-known/gatehouse/session/handoff');
      const landed = await curlReply(h, alice, location, resolve());
      expect(landed.status).toBe(200);
      const urls = pageUrls(landed.body);
      expect(urls.length).toBeGreaterThanOrEqual(2);
      for (const url of urls) expectStaysOn(url, origin, 'landing page URL');
      expect(unescape(/url=([^"]*)"/.exec(landed.body)?.[1] ?? '')).toBe(landing);
    });
  }
});

describe('the signed-in portal and the hand-off form', () => {
  async function session(): Promise<string> {
    const reply = await signIn('/');
    const cookie = (reply.headers['set-cookie']?.[0] ?? '').split(';')[0] as string;
    expect(cookie).toMatch(/^__Host-gatehouse-session=/);
    return cookie;
  }

  for (const next of ['https://evil.example/web/x', `https://evil.example:PORT/web/`, '//evil.example/web/x', 'https:evil.example/web/x']) {
    it(`does not offer ${next} (400, no form-action for it)`, async () => {
      const cookie = await session();
      const target = next.replace('PORT', String(h.port));
      const page = await curlReply(h, alice, `/.well-known/gatehouse/?next=${encodeURIComponent(target)}`, ['-H', `Cookie: ${cookie}`]);
      expect(page.status).toBe(400);
      expect(page.headers['content-security-policy']?.[0]).not.toContain('evil');
      expect(page.body).not.toContain('evil.example');
      const handoff = await curlReply(h, alice, '/.well-known/gatehouse/session/handoff', ['-H', `Cookie: ${cookie}`, '-H', `Origin: ${gateway}`, '--data-urlencode', `next=${target}`]);
      expect(handoff.status).toBe(400);
      expect(handoff.headers.location).toBeUndefined();
    });
  }

  it('offers a service\'s origin normalized, and only that origin as a form target', async () => {
    const cookie = await session();
    const page = await curlReply(h, alice, `/.well-known/gatehouse/?next=${encodeURIComponent(`https://${service}//evil.example/phish`)}`, ['-H', `Cookie: ${cookie}`]);
    expect(page.status).toBe(200);
    expect(page.body).toContain(`id="target">https://${service}/evil.example/phish<`);
    expect(page.headers['content-security-policy']?.[0]).toContain(`form-action 'self' https://${service};`);
    for (const url of pageUrls(page.body)) expectStaysOn(url, gateway, 'portal URL');
  });
});

describe('the sign-in redirect of a navigation', () => {
  it('sends a browser to sign in with the normalized path, which the sign-in then accepts', async () => {
    const nav = await curlReply(h, alice, '//web//x', ['-H', 'Sec-Fetch-Mode: navigate']);
    expect(nav.status).toBe(303);
    const location = nav.headers.location?.[0] ?? '';
    expectStaysOn(location, gateway, 'sign-in redirect');
    const next = new URL(location, gateway).searchParams.get('next') ?? '';
    expect(next).toBe('/web/x');
    const reply = await signIn(next);
    expect(reply.status).toBe(303);
    expect(reply.headers.location).toEqual(['/web/x']);
  });
});
