// Path normalization and route matching: the canonical path every later stage sees, and the
// parameter alphabet that keeps captures from steering a socket path.
import { describe, expect, it } from 'vitest';
import { encodePath, normalizeTarget } from '../src/routing/normalizePath.ts';
import { RouteTable, hostOnly } from '../src/routing/routeTable.ts';
import type { RouteConfig } from '../src/config/schema.ts';

const limits = { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 10_000 };
const route = (r: Partial<RouteConfig> & { name: string; path: string }): RouteConfig => ({
  protocols: ['http'],
  upstream: 'unix:/tmp/x.sock',
  stripPrefix: true,
  forwardToken: false,
  policy: 'allow if true;',
  ...r,
});

describe('normalizeTarget', () => {
  it.each([
    ['/a/b', '/a/b'],
    ['//a///b/', '/a/b/'],
    ['/a/./b/../c', '/a/c'],
    ['/a/%62', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/%7Ealice/x', '/~alice/x'],
    ['/', '/'],
    ['/a?x=1&y=/..', '/a'],
  ])('%s -> %s', (input, expected) => {
    const n = normalizeTarget(input);
    expect(n.ok && n.path).toBe(expected);
  });

  it.each([
    ['/a/%2e%2e/%2e%2e/etc', 'climbs'],
    ['/..', 'climbs'],
    ['/a/%2Fb', 'separator'],
    ['/a/%5cb', 'separator'],
    ['/a\\b', 'backslash'],
    ['/a/%00', 'separator or control'],
    ['/a/%zz', 'percent'],
    ['http://evil/a', 'origin-form'],
    ['*', 'origin-form'],
  ])('refuses %s', (input, why) => {
    const n = normalizeTarget(input);
    expect(n.ok).toBe(false);
    expect(!n.ok && n.reason).toContain(why);
  });

  it('keeps the query and re-encodes segments', () => {
    const n = normalizeTarget('/a%20b/c?q=%2F');
    expect(n.ok && n.query).toBe('?q=%2F');
    expect(n.ok && encodePath(n.segments, n.trailingSlash)).toBe('/a%20b/c');
  });
});

describe('RouteTable', () => {
  const table = new RouteTable(
    [
      route({ name: 'root', path: '/' }),
      route({ name: 'demo', path: '/demo/' }),
      route({ name: 'users', path: '/~{user}/{service}/' }),
      route({ name: 'hosted', path: '/demo/', host: 'api.example.org' }),
      route({ name: 'tunnel', path: '/', protocols: ['tcp'] }),
    ],
    limits,
  );
  const match = (path: string, host = 'gw.example.org') => {
    const n = normalizeTarget(path);
    if (!n.ok) throw new Error(n.reason);
    return table.match(host, n.segments, 'http');
  };

  it('prefers the most specific route', () => {
    expect(match('/demo/x').ok && (match('/demo/x') as { route: { config: RouteConfig } }).route.config.name).toBe('demo');
    const m = match('/demo/x', 'API.example.org:8443');
    expect(m.ok && m.route.config.name).toBe('hosted');
    const r = match('/other');
    expect(r.ok && r.route.config.name).toBe('root');
  });

  it('captures parameters and the rest of the path', () => {
    const m = match('/~alice/jupyter/api/kernels');
    expect(m.ok && m.route.config.name).toBe('users');
    expect(m.ok && m.params).toEqual({ user: 'alice', service: 'jupyter' });
    expect(m.ok && m.rest).toEqual(['api', 'kernels']);
  });

  it('refuses parameters outside the safe alphabet', () => {
    for (const bad of ['/~..%2f/x/', '/~.hidden/x/', '/~a%20b/x/', '/~alice/%2e%2e/']) {
      const n = normalizeTarget(bad);
      if (!n.ok) continue; // refused even earlier
      const m = table.match('h', n.segments, 'http');
      expect(m.ok && m.route.config.name === 'users').toBe(false);
    }
    const n = normalizeTarget('/~.x/svc/');
    const m = n.ok ? table.match('h', n.segments, 'http') : undefined;
    expect(m && !m.ok && m.status).toBe(400);
  });

  it('only matches routes serving the protocol; tunnels are found by name', () => {
    expect(table.byName('tunnel')?.config.protocols).toEqual(['tcp']);
    const none = new RouteTable([route({ name: 't', path: '/', protocols: ['tcp'] })], limits).match('h', [], 'http');
    expect(none.ok).toBe(false);
    expect(!none.ok && none.status).toBe(404);
  });

  it('hostOnly strips ports and keeps IPv6 brackets', () => {
    expect(hostOnly('Example.org:443')).toBe('example.org');
    expect(hostOnly('[::1]:8443')).toBe('[::1]');
    expect(hostOnly(undefined)).toBeUndefined();
  });
});
