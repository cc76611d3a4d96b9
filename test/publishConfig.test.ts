// The configuration side of publishing, without processes: routes.yaml keys (tunnel templates, published:
// upstreams, the publish block), tunnel-name routing, and what `gatehouse publish` accepts as a target.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/configCheck/loadConfig.ts';
import type { RouteConfig } from '../src/config/schema.ts';
import { RouteTable } from '../src/routing/routeTable.ts';
import { parsePublishSpec, parseWindowSize } from '../src/client/publishSpec.ts';
import { isLoopback } from '../src/client/forwardSpec.ts';
import { parseRawTcpList, parseServiceList, parseUdpList } from '../src/upstream/publishProtocol.ts';
import { gatewayConfig, makeRootKey } from './support/gatewayHarness.ts';
import { makeTestPki } from './support/pki.ts';
import { publishedRoute } from './support/publishPeers.ts';

let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-publish-config-'));
  await makeTestPki(join(dir, 'certs'));
  writeFileSync(join(dir, 'certs', 'token-root.pub'), makeRootKey().publicKey + '\n');
  writeFileSync(join(dir, 'certs', 'revoked.txt'), '');
});

async function problems(routes: string, extraTop = 'publish:\n  policy: |\n    allow if user($u);\n'): Promise<string[]> {
  const file = join(dir, `routes-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, gatewayConfig({ routes, extraTop }));
  const result = await loadConfig(file);
  return result.ok ? [] : result.errors.map((e) => `${e.key}: ${e.message}`);
}

const userSockets = `  - name: user-sockets
    protocols: [tcp]
    tunnel: "{service}.{user}.local"
    upstream: unix:/run/user-sockets/{user}/{service}.sock
    socketOwner: user
    policy: |
      allow if user($u), param("user", $u);
`;

describe('routes.yaml', () => {
  it('accepts the published route, a templated unix: tcp route with socketOwner, and the publish block', async () => {
    expect(await problems(publishedRoute + userSockets, 'publish:\n  policy: |\n    allow if user($u), service($s);\n  servicesPerUser: 4\n  publishersPerUser: 2\n  streamsPerPublisher: 100\n')).toEqual([]);
  });

  it('gatehouse publish --window takes bytes or K/M/G within 256 KiB..1 GiB, defaulting to 16 MiB', () => {
    expect(parseWindowSize(undefined)).toEqual({ ok: true, bytes: 16 << 20 });
    expect(parseWindowSize('2M')).toEqual({ ok: true, bytes: 2 << 20 });
    expect(parseWindowSize('512KiB')).toEqual({ ok: true, bytes: 512 << 10 });
    expect(parseWindowSize('1G')).toEqual({ ok: true, bytes: 1 << 30 });
    expect(parseWindowSize('1048576')).toEqual({ ok: true, bytes: 1 << 20 });
    for (const bad of ['1K', '2G', '-1M', '1.5M', 'lots', '']) expect(parseWindowSize(bad)).toMatchObject({ ok: false, error: expect.stringMatching(/^--window /) });
  });

  it('takes publish.window in bytes within 256 KiB..1 GiB, defaulting to 16 MiB', async () => {
    const block = (extra: string) => `publish:\n  policy: |\n    allow if user($u);\n${extra}`;
    expect(await problems(publishedRoute, block('  window: 33554432\n'))).toEqual([]);
    expect(await problems(publishedRoute, block('  window: 65535\n'))).toEqual([expect.stringMatching(/^publish\.window: /)]);
    expect(await problems(publishedRoute, block('  window: 2147483647\n'))).toEqual([expect.stringMatching(/^publish\.window: /)]);
    const file = join(dir, 'routes-window-default.yaml');
    writeFileSync(file, gatewayConfig({ routes: publishedRoute, extraTop: block('') }));
    const loaded = await loadConfig(file);
    expect(loaded.ok && loaded.config.publish?.window).toBe(16 << 20);
  });

  it('names what is wrong with tunnel templates and published upstreams', async () => {
    const found = await problems(`  - name: untemplated
    protocols: [tcp]
    upstream: unix:/run/x/{user}.sock
    policy: "allow if true;"
  - name: glued
    protocols: [tcp]
    tunnel: "{service}{user}"
    upstream: published:{user}/{service}
    policy: "allow if true;"
  - name: http-only
    path: /h/{user}/
    tunnel: "{user}"
    upstream: unix:/run/h.sock
    policy: "allow if true;"
  - name: half
    protocols: [tcp]
    tunnel: "{service}.x"
    upstream: published:{user}/{service}
    policy: "allow if true;"
`, 'publish:\n  policy: |\n    allow if user($u) and;\n');
    const text = found.join('\n');
    expect(text).toMatch(/upstream uses \{user\}, but tcp tunnels name the route itself: give the route a tunnel: template/);
    expect(text).toMatch(/two captures side by side/);
    expect(text).toMatch(/tunnel names tcp tunnels and udp flows; this route allows neither/);
    expect(text).toMatch(/upstream uses \{user\}, but the tunnel template does not capture it/);
    expect(text).toMatch(/^publish.policy: policy does not parse/m);
    expect(text).toMatch(/^routes\[0\].upstream: /m);
  });
});

describe('tunnel names', () => {
  const limits = { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 10_000 };
  const route = (over: Partial<RouteConfig>): RouteConfig => ({ name: 'r', path: '/', protocols: ['tcp'], upstream: 'unix:/x.sock', stripPrefix: true, forwardToken: false, policy: 'allow if true;', ...over });
  const table = new RouteTable(
    [
      route({ name: 'published', tunnel: '{service}.{user}', upstream: 'published:{user}/{service}' }),
      route({ name: 'local', tunnel: '{service}.{user}.local', upstream: 'unix:/run/{user}/{service}.sock' }),
      route({ name: 'db.alice' }),
    ],
    limits,
  );

  it('captures parameters, the most literal template winning; a route\'s own name wins over templates', () => {
    expect(table.tunnel('jupyter.alice', 'tcp')).toMatchObject({ ok: true, route: { config: { name: 'published' } }, params: { service: 'jupyter', user: 'alice' } });
    expect(table.tunnel('db.alice.local', 'tcp')).toMatchObject({ ok: true, route: { config: { name: 'local' } }, params: { service: 'db', user: 'alice' } });
    expect(table.tunnel('db.alice', 'tcp')).toMatchObject({ ok: true, route: { config: { name: 'db.alice' } }, params: {} });
    expect(table.tunnel('jupyter', 'tcp')).toMatchObject({ ok: false, status: 404 });
    expect(table.tunnel('jupyter.alice', 'websocket')).toMatchObject({ ok: false, status: 404 });
  });
});

describe('gatehouse publish targets', () => {
  it('accepts UNIX sockets and loopback ports only', () => {
    expect(parsePublishSpec('jupyter=unix:~/.gatehouse/j.sock', '/home/alice')).toEqual({ ok: true, spec: { service: 'jupyter', target: { kind: 'unix', path: '/home/alice/.gatehouse/j.sock' } } });
    expect(parsePublishSpec('api=8000')).toEqual({ ok: true, spec: { service: 'api', target: { kind: 'tcp', host: '127.0.0.1', port: 8000 } } });
    expect(parsePublishSpec('api=127.0.0.2:8000')).toMatchObject({ ok: true, spec: { target: { host: '127.0.0.2' } } });
    expect(parsePublishSpec('api=[::1]:8000')).toMatchObject({ ok: true, spec: { target: { host: '::1' } } });
    expect(parsePublishSpec('api=tcp:localhost:8000')).toMatchObject({ ok: true, spec: { target: { host: 'localhost' } } });
    for (const bad of ['api=10.0.0.5:22', 'api=example.org:80', 'api=[2001:db8::1]:80', 'api=0.0.0.0:80']) {
      expect(parsePublishSpec(bad)).toMatchObject({ ok: false, error: expect.stringMatching(/not a loopback address/) });
    }
    for (const bad of ['Api=8000', 'alice/api=8000', 'a.b=8000', '=8000', 'api=', 'api=unix:', 'api=99999']) expect(parsePublishSpec(bad).ok).toBe(false);
  });

  it('a loopback target is an IP literal in 127.0.0.0/8 or ::1, or localhost: a name that merely starts with 127. is refused', () => {
    for (const bad of ['api=127.evil.example:80', 'api=tcp:127.0.0.1.nip.io:80', 'dns=udp:127.evil.example:53', 'api=127.1:80', 'api=localhost.evil.example:80']) {
      expect(parsePublishSpec(bad)).toMatchObject({ ok: false, error: expect.stringMatching(/is not a loopback address; a publisher reaches only this machine/) });
    }
    for (const good of ['api=127.255.255.254:80', 'api=[0:0:0:0:0:0:0:1]:80', 'dns=udp:localhost:53']) expect(parsePublishSpec(good).ok).toBe(true);
    expect(isLoopback('127.evil.example')).toBe(false);
    expect(isLoopback('::ffff:127.0.0.1')).toBe(true);
    expect(isLoopback('127.0.0.1')).toBe(true);
  });

  it('NAME/tcp= says the service speaks raw TCP (the portal shows tunnel -L for it); NAME/http= is the default', () => {
    expect(parsePublishSpec('db/tcp=unix:/run/db.sock')).toEqual({ ok: true, spec: { service: 'db', target: { kind: 'unix', path: '/run/db.sock' }, rawTcp: true } });
    expect(parsePublishSpec('redis/tcp=6379')).toEqual({ ok: true, spec: { service: 'redis', target: { kind: 'tcp', host: '127.0.0.1', port: 6379 }, rawTcp: true } });
    expect(parsePublishSpec('web/http=8000')).toEqual({ ok: true, spec: { service: 'web', target: { kind: 'tcp', host: '127.0.0.1', port: 8000 } } });
    for (const bad of ['db/udp=8000', 'db/tcp/tcp=8000', '/tcp=8000']) expect(parsePublishSpec(bad).ok).toBe(false);
    expect(parseRawTcpList('db', ['web', 'db'])).toEqual({ ok: true, rawTcp: ['db'] });
    expect(parseRawTcpList(undefined, ['web'])).toEqual({ ok: true, rawTcp: [] });
    expect(parseRawTcpList('other', ['web'])).toMatchObject({ ok: false });
  });

  it('NAME=udp:[HOST:]PORT is a UDP service on this machine only; it takes no /tcp or /http', () => {
    expect(parsePublishSpec('stream=udp:127.0.0.1:9000')).toEqual({ ok: true, spec: { service: 'stream', target: { kind: 'udp', host: '127.0.0.1', port: 9000 } } });
    expect(parsePublishSpec('dns=udp:5353')).toEqual({ ok: true, spec: { service: 'dns', target: { kind: 'udp', host: '127.0.0.1', port: 5353 } } });
    expect(parsePublishSpec('dns=udp:[::1]:53')).toMatchObject({ ok: true, spec: { target: { kind: 'udp', host: '::1' } } });
    expect(parsePublishSpec('dns=udp:10.0.0.5:53')).toMatchObject({ ok: false, error: expect.stringMatching(/not a loopback address/) });
    expect(parsePublishSpec('dns/tcp=udp:53')).toMatchObject({ ok: false, error: expect.stringMatching(/drop the \/tcp/) });
    for (const bad of ['dns=udp:', 'dns=udp:0', 'dns=udp:unix:/x', 'dns=udp:70000']) expect(parsePublishSpec(bad).ok).toBe(false);
    expect(parseUdpList('dns', ['web', 'dns'], [])).toEqual({ ok: true, udp: ['dns'] });
    expect(parseUdpList(undefined, ['web'], [])).toEqual({ ok: true, udp: [] });
    expect(parseUdpList('other', ['web'], [])).toMatchObject({ ok: false });
    expect(parseUdpList('db', ['db'], ['db'])).toMatchObject({ ok: false, reason: expect.stringMatching(/both a UDP and a raw TCP service/) });
  });

  it('checks the service list a publisher sends', () => {
    expect(parseServiceList('web, echo')).toEqual({ ok: true, services: ['web', 'echo'] });
    expect(parseServiceList('web, web')).toMatchObject({ ok: false });
    expect(parseServiceList('../alice')).toMatchObject({ ok: false });
    expect(parseServiceList('')).toMatchObject({ ok: false });
  });
});
