// The pure parts of browser sessions: host templates, where a sign-in may return to, which cookies
// cross the gateway, and Location / Set-Cookie rewriting under a stripped prefix.
import { describe, expect, it } from 'vitest';
import { rewriteCookiePath, rewriteLocation } from '../src/forward/prefixRewrite.ts';
import { RouteTable } from '../src/routing/routeTable.ts';
import { compileHostTemplate, matchHostTemplate } from '../src/routing/hostTemplate.ts';
import { nextTarget } from '../src/portal/nextTarget.ts';
import { readSessionCookie, withoutGatewayCookies } from '../src/portal/sessionCookie.ts';
import { createHandoffCodes } from '../src/portal/handoffCodes.ts';
import { openIpcHandoffStore } from '../src/portal/ipcHandoffCodes.ts';
import type { RouteConfig } from '../src/config/schema.ts';

const limits = { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 5000 };
const route = (r: Partial<RouteConfig> & { name: string }): RouteConfig => ({ path: '/', protocols: ['http'], upstream: 'unix:/x.sock', stripPrefix: true, forwardToken: false, policy: 'allow if true;', ...r }) as RouteConfig;

describe('host templates', () => {
  it('capture one label piece each, never across a dot', () => {
    const t = compileHostTemplate('{service}--{user}.apps.example.org');
    expect(matchHostTemplate(t, 'jupyter--alice.apps.example.org')).toEqual({ service: 'jupyter', user: 'alice' });
    expect(matchHostTemplate(t, 'a.b--alice.apps.example.org')).toBeUndefined();
    expect(matchHostTemplate(t, 'jupyter--alice.apps.example.org.evil')).toBeUndefined();
    expect(matchHostTemplate(t, 'jupyter-alice.apps.example.org')).toBeUndefined();
  });

  it('route by host captures, which the policy and upstream see as parameters', () => {
    const table = new RouteTable([route({ name: 'svc', host: '{service}--{user}.apps.test' }), route({ name: 'portal', host: 'localhost' })], limits);
    const m = table.match('Jupyter--Alice.apps.test:8443', ['tree'], 'http');
    expect(m.ok && m.route.config.name).toBe('svc');
    expect(m.ok && m.params).toEqual({ service: 'jupyter', user: 'alice' });
    expect(table.match('localhost:8443', [], 'http').ok && true).toBe(true);
    expect(table.match('other.test', [], 'http').ok).toBe(false);
  });
});

describe('where a sign-in returns to', () => {
  it('accepts paths on the gateway and refuses everything a browser could read as another site', () => {
    expect(nextTarget('/app/x?y=1#z')).toEqual({ ok: true, path: '/app/x?y=1#z' });
    expect(nextTarget('')).toEqual({ ok: true, path: '/.well-known/gatehouse/' });
    for (const bad of ['//evil.example/', '/\\evil.example', 'https://evil.example/', 'javascript:alert(1)', '/a\tb', ' /a', 'x']) expect(nextTarget(bad).ok, bad).toBe(false);
  });

  it('accepts another origin only when the gateway says it serves it', () => {
    const own = { hostHeader: 'gw.test:8443', serves: (hostname: string) => hostname.endsWith('.apps.test') };
    expect(nextTarget('https://jupyter--alice.apps.test:8443/tree', own)).toEqual({ ok: true, origin: 'https://jupyter--alice.apps.test:8443', path: '/tree' });
    expect(nextTarget('https://evil.example:8443/tree', own).ok).toBe(false);
    expect(nextTarget('https://alice@x.apps.test:8443/', own).ok).toBe(false);
    expect(nextTarget('http://x.apps.test:8443/', own).ok).toBe(false);
    expect(nextTarget('https://x.apps.test/', own).ok).toBe(false);
    expect(nextTarget('https://x.apps.test:8443//evil.example/x', own)).toEqual({ ok: true, origin: 'https://x.apps.test:8443', path: '/evil.example/x' });
    expect(nextTarget('https://GW.test:8443//x', own)).toEqual({ ok: true, path: '/x' });
  });
});

describe('gateway cookies', () => {
  it('are removed from what the upstream sees, the application cookies kept', () => {
    expect(withoutGatewayCookies('a=1; __Host-gatehouse-session=abc; b=2')).toBe('a=1; b=2');
    expect(withoutGatewayCookies('__Host-gatehouse-session=abc')).toBeUndefined();
    expect(withoutGatewayCookies('a=1;b=2')).toBe('a=1;b=2');
  });

  it('are read once: two session cookies are refused, not chosen between', () => {
    expect(readSessionCookie('__Host-gatehouse-session=abc', 100)).toEqual({ kind: 'token', token: 'abc' });
    expect(readSessionCookie(['__Host-gatehouse-session=abc', '__Host-gatehouse-session=def'], 100).kind).toBe('invalid');
    expect(readSessionCookie('__Host-gatehouse-session=a b', 100).kind).toBe('invalid');
  });
});

describe('one-time sign-in codes', () => {
  it('work once, for one certificate and one host, for a short time', () => {
    let now = 0;
    const codes = createHandoffCodes(() => now);
    const handoff = { token: 't', maxAgeSeconds: 60, fingerprint: 'sha256:aa', host: 'x.apps.test:8443', next: '/', user: 'alice', revocationIds: [] };
    const a = codes.issue(handoff);
    expect(codes.take(a, 'sha256:bb', 'x.apps.test:8443').ok).toBe(false);
    expect(codes.take(a, 'sha256:aa', 'x.apps.test:8443').ok).toBe(false); // spent by the failed try
    const b = codes.issue(handoff);
    expect(codes.take(b, 'sha256:aa', 'y.apps.test:8443').ok).toBe(false);
    const c = codes.issue(handoff);
    now += 31_000;
    expect(codes.take(c, 'sha256:aa', 'x.apps.test:8443')).toEqual({ ok: false, reason: 'sign-in code expired', kind: 'unknown' });
    const d = codes.issue(handoff);
    expect(codes.take(d, 'sha256:aa', 'X.apps.test:8443')).toMatchObject({ ok: true, handoff: { user: 'alice' } });
    expect(codes.take(d, 'sha256:aa', 'x.apps.test:8443').ok).toBe(false);
  });

  it('keep an entry that asks for longer (a browser sign-in at the IdP) that long, and no longer', () => {
    let now = 0;
    const codes = createHandoffCodes(() => now);
    const login = { token: '{}', maxAgeSeconds: 0, fingerprint: 'sha256:aa', host: 'login gw.example.org', next: '/', user: '', revocationIds: [], ttlMs: 600_000 };
    const a = codes.issue(login);
    const b = codes.issue(login);
    now += 599_000;
    expect(codes.take(a, 'sha256:aa', 'login gw.example.org').ok).toBe(true);
    now += 2_000;
    expect(codes.take(b, 'sha256:aa', 'login gw.example.org')).toMatchObject({ ok: false, kind: 'unknown' });
  });
});

describe('a stripped prefix put back', () => {
  const prefix = { prefix: '/~alice/jupyter', host: 'gw.example.org:8443' };
  it('in Location', () => {
    expect(rewriteLocation('/tree?x=1', prefix)).toBe('/~alice/jupyter/tree?x=1');
    expect(rewriteLocation('http://gw.example.org:8443/tree', prefix)).toBe('https://gw.example.org:8443/~alice/jupyter/tree');
    expect(rewriteLocation('tree', prefix)).toBe('tree');
    expect(rewriteLocation('//evil.example/x', prefix)).toBe('//evil.example/x');
    expect(rewriteLocation('https://other.example/x', prefix)).toBe('https://other.example/x');
  });
  it('in Set-Cookie Path', () => {
    expect(rewriteCookiePath('a=1; Path=/; HttpOnly', prefix)).toBe('a=1; Path=/~alice/jupyter/; HttpOnly');
    expect(rewriteCookiePath('a=1; path=/x', prefix)).toBe('a=1; path=/~alice/jupyter/x');
    expect(rewriteCookiePath('a=1', prefix)).toBe('a=1');
  });
});

describe('one-time sign-in codes kept by the primary', () => {
  it('fail closed when the primary cannot be asked', async () => {
    const closed = { connected: false, on: () => undefined, send: () => true };
    const store = openIpcHandoffStore(closed);
    const handoff = { token: 't', maxAgeSeconds: 60, fingerprint: 'sha256:aa', host: 'x.apps.test:8443', next: '/', user: 'alice', revocationIds: [] };
    expect(await store.issue(handoff)).toMatchObject({ ok: false, reason: expect.stringContaining('closed') });
    expect(await store.take('code', 'sha256:aa', 'x.apps.test:8443')).toMatchObject({ ok: false });
  });

  it('fail closed when the primary does not answer', async () => {
    const silent = { connected: true, on: () => undefined, send: () => true };
    const store = openIpcHandoffStore(silent, 50);
    expect(await store.take('code', 'sha256:aa', 'x.apps.test:8443')).toMatchObject({ ok: false, reason: expect.stringContaining('did not answer') });
  });
});
