// Path encodings against a prefix route and a `{user}` capture route: each target is refused (400/404),
// denied on the route it really names, or forwarded with exactly the normalized path; the audit says which.
import { afterAll, beforeAll, describe, it } from 'vitest';
import { startHostileGateway, type HostileGateway, type UserName } from './support/hostileGateway.ts';
import { http, runHttpCase, type HttpCase } from './support/httpCase.ts';

let g: HostileGateway;
beforeAll(async () => {
  g = await startHostileGateway();
});
afterAll(async () => {
  await g?.stop();
});

const request = (target: string) => http(`GET ${target} HTTP/1.1`, ['Host: localhost', '<AUTH>']);
/** The audit `target` is written only when the raw target differs from the normalized path. */
const targetField = (target: string, path: string | undefined) => (target === path ? null : target);

/** Refused by normalization or routing: nothing reaches any upstream. */
function refused(target: string, status: 400 | 404, why: string, path?: string): HttpCase {
  return {
    name: `${target.length > 80 ? target.slice(0, 80) + '…' : target} -> ${status} (${why})`,
    send: request(target),
    status: [status],
    upstream: [],
    audit: [{ status, decision: 'deny', ...(path !== undefined && { path, target: targetField(target, path) }) }],
  };
}

/** Normalizes onto a route the caller may not use: denied there, upstream untouched. */
function deniedOn(target: string, route: string, path: string, status = 403): HttpCase {
  return {
    name: `${target} -> ${path} on route ${route}: ${status}`,
    send: request(target),
    status: [status],
    upstream: [],
    audit: [{ status, decision: 'deny', route, path, target: targetField(target, path) }],
  };
}

/** Forwarded: the upstream receives exactly `upstreamTarget`. */
function forwarded(target: string, upstreamTarget: string, path: string, opts: { route?: string; as?: UserName; why?: string } = {}): HttpCase {
  const route = opts.route ?? 'web';
  return {
    name: `${target.length > 80 ? target.slice(0, 80) + '…' : target} -> upstream ${upstreamTarget.length > 60 ? upstreamTarget.slice(0, 60) + '…' : upstreamTarget}${opts.why ? ` (${opts.why})` : ''}`,
    ...(opts.as && { as: opts.as }),
    send: request(target),
    status: [200],
    upstreamOf: route === 'users' ? 'userRecorder' : 'recorder',
    upstream: [{ method: 'GET', target: upstreamTarget, route }],
    audit: [{ status: 200, decision: 'allow', route, path, target: targetField(target, path) }],
  };
}

const longSegment = 'a'.repeat(9000);

const cases: HttpCase[] = [
  // Dot segments, encoded and not.
  deniedOn('/web/%2e%2e/secret/x', 'secret', '/secret/x'),
  deniedOn('/web/%2E%2E/secret/x', 'secret', '/secret/x'),
  deniedOn('/web/.%2e/secret/x', 'secret', '/secret/x'),
  deniedOn('/web/../secret/x', 'secret', '/secret/x'),
  forwarded('/web/%2e%2e/secret/x', '/secret/x', '/secret/x', { route: 'secret', as: 'admin', why: 'admin may use secret' }),
  forwarded('/secret/../web/x', '/web/x', '/web/x'),
  forwarded('/web/./x', '/web/x', '/web/x'),
  forwarded('/web/%2e/x', '/web/x', '/web/x'),
  forwarded('/web/x/.', '/web/x/', '/web/x/'),
  forwarded('/web/x/y/..', '/web/x/', '/web/x/'),
  refused('/../web/x', 400, 'climbs above the root'),
  refused('/web/../../x', 400, 'climbs above the root'),
  refused('/web/%2e%2e/%2e%2e/x', 400, 'climbs above the root'),
  // Encoded separators.
  refused('/web/..%2fsecret/x', 400, 'encoded slash'),
  refused('/web/..%2Fsecret/x', 400, 'encoded slash'),
  refused('/~alice/app%2fx/', 400, 'encoded slash in a capture'),
  refused('/~alice%2fapp/x/', 400, 'encoded slash in the user capture'),
  refused('/web/..\\secret/x', 400, 'backslash'),
  refused('/web/%5c../secret/x', 400, 'encoded backslash'),
  refused('/web/%5C', 400, 'encoded backslash'),
  // Double encoding and other spellings that must stay literal.
  forwarded('/web/%252e%252e/secret/x', '/web/%252e%252e/secret/x', '/web/%2e%2e/secret/x', { why: 'decoded once only' }),
  forwarded('/web/%252f', '/web/%252f', '/web/%2f', { why: 'decoded once only' }),
  forwarded('/web/..;/secret/x', '/web/..%3B/secret/x', '/web/..;/secret/x', { why: 'a ..; segment is not ..' }),
  deniedOn('/secret/..;/web/x', 'secret', '/secret/..;/web/x'),
  forwarded('/web/%ef%bc%8e%ef%bc%8e/secret/x', '/web/%EF%BC%8E%EF%BC%8E/secret/x', '/web/\uff0e\uff0e/secret/x', { why: 'fullwidth dots are not dots' }),
  // Empty segments.
  forwarded('//web/x', '/web/x', '/web/x'),
  forwarded('/web//x', '/web/x', '/web/x'),
  forwarded('/web///x//', '/web/x/', '/web/x/'),
  // Control characters and broken escapes.
  refused('/web/%00', 400, 'NUL'),
  refused('/web/x%00.txt', 400, 'NUL'),
  refused('/web/%0a', 400, 'LF'),
  refused('/web/x%0d%0aX-Gatehouse-User:%20admin', 400, 'CRLF header injection'),
  refused('/web/%7f', 400, 'DEL'),
  refused('/web/%c0%ae%c0%ae/secret/x', 400, 'overlong UTF-8 dot'),
  refused('/web/%e0%80%ae', 400, 'overlong UTF-8 dot, three bytes'),
  refused('/web/%zz', 400, 'invalid escape'),
  refused('/web/%', 400, 'lone percent'),
  refused('/web/%2', 400, 'truncated escape'),
  refused('/web/%u002e%u002e/x', 400, 'IIS %u escape'),
  // Query and fragment.
  forwarded('/web/x?/../../secret/y', '/web/x?/../../secret/y', '/web/x', { why: 'dots in the query are the query' }),
  forwarded('/secret%3f/../web/x', '/web/x', '/web/x', { why: 'an encoded ? is a path character' }),
  forwarded('/web/x%3F.txt', '/web/x%3F.txt', '/web/x?.txt'),
  refused('/web%3f/x', 404, 'an encoded ? is part of the first segment', '/web?/x'),
  forwarded('/web/x;jsessionid=1', '/web/x%3Bjsessionid%3D1', '/web/x;jsessionid=1'),
  forwarded('/web/%20x', '/web/%20x', '/web/ x'),
  forwarded('/web/x#frag', '/web/x%23frag', '/web/x#frag', { why: 'a fragment is a path character to the gateway and arrives encoded' }),
  deniedOn('/web/x#/../../secret/y', 'secret', '/secret/y'),
  {
    name: 'raw UTF-8 bytes (fullwidth dots) in the request line -> 400 from the parser',
    send: request('/web/\xef\xbc\x8e\xef\xbc\x8e/x'),
    status: [400],
    closed: true,
    upstream: [],
    audit: [{ status: 400, decision: 'deny', reason: /^malformed HTTP/ }],
  },
  forwarded('/web', '/web', '/web', { why: 'the prefix without its slash' }),
  // Size.
  forwarded(`/web/${longSegment}`, `/web/${longSegment}`, `/web/${longSegment}`, { why: 'a 9000-byte path' }),
  // Routing by case and prefix.
  refused('/WEB/x', 404, 'routes are case-sensitive', '/WEB/x'),
  refused('/nothing/here', 404, 'no route', '/nothing/here'),
  // The {user} capture route.
  forwarded('/~alice/app/', '/', '/~alice/app/', { route: 'users' }),
  forwarded('/~alice/app/deep/path?q=1', '/deep/path?q=1', '/~alice/app/deep/path', { route: 'users' }),
  forwarded('/~alice/app/x/%2e%2e/y', '/y', '/~alice/app/y', { route: 'users' }),
  deniedOn('/~bob/app/', 'users', '/~bob/app/'),
  deniedOn('/~ALICE/app/', 'users', '/~ALICE/app/'),
  deniedOn('/~alice/app/%2e%2e/%2e%2e/~bob/app/', 'users', '/~bob/app/'),
  refused('/~.alice/app/', 400, 'a capture starting with a dot', '/~.alice/app/'),
  refused('/~alice/.app/', 400, 'a capture starting with a dot', '/~alice/.app/'),
  refused('/~alice/..app/', 400, 'a capture starting with a dot', '/~alice/..app/'),
  refused('/~al%20ice/app/', 400, 'a space in a capture', '/~al ice/app/'),
  {
    name: '/~alice/missing/ -> 502: authorized, but no socket for that service',
    send: request('/~alice/missing/'),
    status: [502],
    upstream: [],
    audit: [{ status: 502, decision: 'allow', route: 'users', path: '/~alice/missing/', reason: /upstream/ }],
  },
];

describe('path encodings', () => {
  for (const c of cases) it(c.name, () => runHttpCase(g, c));
});
