// Properties of socket templating over request paths: whatever a client puts in the path, the
// captures routing hands to `unix:/dir/{user}/{service}.sock` keep the socket inside that directory.
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../src/config/schema.ts';
import { normalizeTarget } from '../../src/routing/normalizePath.ts';
import { RouteTable } from '../../src/routing/routeTable.ts';
import { resolveUpstream } from '../../src/admission/admitRequest.ts';

const numRuns = 1000;
const socketDir = '/run/user-sockets';
const template = `unix:${socketDir}/{user}/{service}.sock`;

const routes: RouteConfig[] = [
  { name: 'user-services', path: '/~{user}/{service}/', protocols: ['http'], upstream: template, stripPrefix: true, forwardToken: false, policy: 'allow if true;' },
  // A capture sharing its segment with literal text, the other way templates are written.
  { name: 'user-apps', path: '/apps/{user}-{service}/', protocols: ['http'], upstream: template, stripPrefix: true, forwardToken: false, policy: 'allow if true;' },
];
const table = new RouteTable(routes, { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 10_000 });

/** What a hostile client puts where a user or service name belongs. */
const hostilePiece = fc.oneof(
  fc.constantFrom('.', '..', '%2e', '%2E%2e', '%2f', '/', '\\', '%5c', '%00', '%c0%ae', '~', '%20', ';', '?', '#'),
  fc.string({ unit: 'binary', maxLength: 3 }),
  fc.integer({ min: 0, max: 0x10ffff }).filter((c) => c < 0xd800 || c > 0xdfff).map((c) => encodeURIComponent(String.fromCodePoint(c))),
);
/** Pieces inside the capture alphabet, plain or percent-encoded, so that many captures do reach the template. */
const namePiece = fc.constantFrom('alice', 'bob', 'x', '0', 'sock', '.', '..', '-', '@', '+', '_', '%2e', '%2E', '%41', '%5F', '%40');
const pieces = fc.array(fc.oneof({ arbitrary: namePiece, weight: 6 }, { arbitrary: hostilePiece, weight: 1 }), { maxLength: 6 }).map((p) => p.join(''));
/** Mostly a plausible name with hostile pieces after it (so many reach the template), sometimes pieces alone. */
const capture = fc.oneof(
  { arbitrary: fc.tuple(fc.constantFrom('alice', 'bob', 'x', '0', 'Svc_1'), pieces).map(([name, rest]) => name + rest), weight: 3 },
  { arbitrary: pieces, weight: 1 },
);
const requestPath = fc.oneof(
  fc.tuple(capture, capture, capture).map(([user, service, rest]) => `/~${user}/${service}/${rest}`),
  fc.tuple(capture, capture).map(([user, service]) => `/apps/${user}-${service}/`),
  fc.tuple(capture, capture).map(([a, b]) => `/${a}/${b}`),
);

describe('socket templating from routed captures (properties)', () => {
  it('resolves only to a socket directly inside the template directory: no `..`, no NUL, one level per capture', () => {
    let resolved = 0;
    fc.assert(
      fc.property(requestPath, (target) => {
        const n = normalizeTarget(target);
        if (!n.ok) return;
        const match = table.match('gateway.test', n.segments, 'http');
        if (!match.ok) return;
        const upstream = resolveUpstream(match.route.upstream, match.params);
        if (!upstream.ok) return;
        expect(upstream.target.kind).toBe('unix');
        if (upstream.target.kind !== 'unix') return;
        resolved++;
        const socketPath = upstream.target.path;
        expect(socketPath).not.toContain('\0');
        expect(socketPath.split('/')).not.toContain('..');
        expect(socketPath.split('/')).not.toContain('.');
        const absolute = path.resolve(socketPath);
        // What connect() would open is the path as written: nothing for the kernel to resolve differently.
        expect(absolute).toBe(socketPath);
        expect(absolute.startsWith(socketDir + '/')).toBe(true);
        const [user, socketName, ...deeper] = path.relative(socketDir, absolute).split('/');
        expect(deeper).toEqual([]);
        expect(user).toBe(match.params.user);
        expect(socketName).toBe(`${match.params.service}.sock`);
      }),
      { numRuns },
    );
    // Worth something only if hostile paths do reach the template.
    expect(resolved).toBeGreaterThan(numRuns / 10);
  });

  const dotCaptures = ['..', '.', '.hidden', '%2e%2e', '%2E.', 'a%2fb', 'a%5cb', 'a%00', '%c0%ae%c0%ae'];
  it.each(dotCaptures.flatMap((user) => [`/~${user}/svc/`, `/apps/${user}-svc/`]))('refuses %s rather than rewriting it into a socket path', (target) => {
    const n = normalizeTarget(target);
    const match = n.ok ? table.match('gateway.test', n.segments, 'http') : undefined;
    expect(match?.ok ?? false).toBe(false);
  });
});
