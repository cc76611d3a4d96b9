// Request headers a client controls: identity claims and hop-by-hop fields never reach the upstream
// with the client's value, Host is checked, header size limits hold, and bad bytes are refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import { http, runHttpCase, type HttpCase, HOST_LINE as H, AUTH_LINE as A, allowedOnWeb as allow, malformedRecord as malformed } from './support/httpCase.ts';

let g: HostileGateway;
beforeAll(async () => {
  g = await startHostileGateway();
});
afterAll(async () => {
  await g?.stop();
});

const get = (headers: string[]) => http('GET /web/x HTTP/1.1', [H, A, ...headers]);

/** Identity claims from the contract: a client may send any of them; none may reach the upstream with its value. */
const identityClaims = [
  'X-Gatehouse-User', 'X-Gatehouse-Groups', 'X-Gatehouse-Route', 'X-Gatehouse-Client-Subject', 'X-Gatehouse-Client-Issuer',
  'X-Gatehouse-Client-Fingerprint', 'X-Gatehouse-Admin', 'Forwarded', 'X-Forwarded-For', 'X-Forwarded-Proto', 'X-Forwarded-Host',
  'X-Forwarded-Port', 'X-Forwarded-Prefix', 'X-Forwarded-User', 'X-Forwarded-Server', 'X-Real-IP', 'True-Client-IP', 'Client-IP',
  'X-Client-IP', 'X-Cluster-Client-IP', 'CF-Connecting-IP', 'Fastly-Client-IP', 'X-Remote-User', 'X-Remote-Addr',
  'X-Auth-Request-User', 'X-Auth-Request-Email', 'X-Auth-Request-Groups', 'X-Original-URL', 'X-Rewrite-URL', 'X-Original-Forwarded-For',
  'Remote-User', 'X-User', 'X-Client-Cert', 'X-Client-Cert-Chain', 'X-SSL-Client-Cert', 'X-SSL-Client-DN', 'SSL-Client-Cert', 'SSL-Client-Verify',
];
/** Hop-by-hop fields from the contract (Connection, Transfer-Encoding and Expect have their own cases). */
const hopByHop = ['Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer', 'Upgrade', 'Proxy-Authorization', 'HTTP2-Settings'];

interface Spelling {
  label: string;
  lines(name: string, value: string): string[];
}
const spellings: Spelling[] = [
  { label: 'as written', lines: (n, v) => [`${n}: ${v}`] },
  { label: 'in three case spellings (lower, UPPER, as written)', lines: (n, v) => [`${n.toLowerCase()}: ${v}-1`, `${n.toUpperCase()}: ${v}-2`, `${n}: ${v}-3`] },
  { label: 'with underscores for dashes', lines: (n, v) => [`${n.replace(/-/g, '_')}: ${v}`, `${n.toLowerCase().replace(/-/g, '_')}: ${v}-lower`] },
  { label: 'listed in Connection', lines: (n, v) => [`Connection: keep-alive, ${n}`, `${n}: ${v}`] },
];

/** The client's value must not be in any header the upstream received. */
function claimCase(name: string, spelling: Spelling, n: number): HttpCase {
  const marker = `client-claim-${n}`;
  const value = name === 'Proxy-Authorization' ? `Bearer ${marker}` : `${marker} 203.0.113.66 admin`;
  return {
    name: `${name} ${spelling.label}`,
    send: get(spelling.lines(name, value)),
    status: [200],
    closed: false,
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => {
      const raw = upstream.raw().toString('latin1');
      expect(raw, 'client value at the upstream').not.toContain(marker);
      expect(raw).not.toContain('203.0.113.66');
      const sent = name.toLowerCase();
      const names = upstream.requests[0]!.headers.map(([k]) => k.toLowerCase().replace(/_/g, '-'));
      // Names the gateway sets itself are checked (once, its value) by the runner; any other must be gone.
      if (!/^(x-gatehouse-(user|groups|route|client-subject|client-issuer|client-fingerprint)|x-forwarded-(for|proto|host))$/.test(sent)) {
        expect(names, `${name} reached the upstream`).not.toContain(sent);
      }
    },
  };
}

let seq = 0;
const claimCases: HttpCase[] = [];
for (const name of [...identityClaims, ...hopByHop]) {
  for (const s of spellings) {
    // `Connection: Upgrade` + `Upgrade` is a protocol upgrade request, covered by the WebSocket suite.
    if (name === 'Upgrade' && s.label === 'listed in Connection') continue;
    claimCases.push(claimCase(name, s, seq++));
  }
}

const connectionCases: HttpCase[] = [
  {
    name: 'Connection listing the gateway\'s own identity headers does not remove them',
    send: get(['Connection: x-gatehouse-user, x-forwarded-for, x-gatehouse-client-fingerprint, x-gatehouse-route']),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
  },
  {
    name: 'Connection naming a custom header removes it and is not forwarded itself',
    send: get(['Connection: keep-alive, X-Secret-Hop', 'X-Secret-Hop: client-claim-hop']),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.raw().toString('latin1')).not.toMatch(/x-secret-hop|client-claim-hop/i),
  },
  {
    name: 'Connection listing X-Gatehouse-Route on a forwardToken route: the gateway still sets it, the token is still forwarded',
    send: http('GET /fwd/x HTTP/1.1', [H, A, 'Connection: keep-alive, X-Gatehouse-Route']),
    status: [200],
    upstream: [{ method: 'GET', target: '/fwd/x', route: 'fwd' }],
    audit: [{ status: 200, route: 'fwd', path: '/fwd/x' }],
    check: (_x, { g: gw, upstream }) => expect(upstream.requests[0]!.all('authorization')).toEqual([`Bearer ${gw.tokens.alice}`]),
  },
  {
    name: 'Connection: Authorization on a forwardToken route: a field named in Connection is not forwarded',
    send: http('GET /fwd/x HTTP/1.1', [H, A, 'Connection: keep-alive, Authorization']),
    status: [200],
    upstream: [{ method: 'GET', target: '/fwd/x', route: 'fwd' }],
    audit: [{ status: 200, route: 'fwd', path: '/fwd/x' }],
    check: (_x, { upstream }) => expect(upstream.requests[0]!.all('authorization')).toEqual([]),
  },
];

const hostCases: HttpCase[] = [
  { name: 'HTTP/1.1 without Host: 400 naming Host', send: http('GET /web/x HTTP/1.1', [A]), status: [400], upstream: [], audit: [{ status: 400, reason: /host/i }] },
  { name: 'two Host headers: 400', send: get(['Host: evil.example']), status: [400], upstream: [], audit: [{ status: 400, reason: /host/i }] },
  { name: 'two Host headers, same value: 400', send: get(['Host: localhost']), status: [400], upstream: [], audit: [{ status: 400, reason: /host/i }] },
  { name: 'Host with a control character', send: http('GET /web/x HTTP/1.1', ['Host: local\x01host', A]), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'Host with a NUL', send: http('GET /web/x HTTP/1.1', ['Host: localhost\x00.evil', A]), status: [400], closed: true, upstream: [], audit: [malformed] },
  {
    name: 'Host naming another site: routes without host accept it; the upstream sees it once, as x-forwarded-host too',
    send: http('GET /web/x HTTP/1.1', ['Host: evil.example', A]),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.requests[0]!.all('x-forwarded-host')).toEqual(['evil.example']),
  },
  {
    name: 'HTTP/1.0 without Host is allowed (Host is an HTTP/1.1 requirement)',
    send: http('GET /web/x HTTP/1.0', [A]),
    status: [200],
    closed: true,
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
  },
];

const sizeCases: HttpCase[] = [
  {
    name: 'header block over limits.maxHeaderBytes (16 KiB): 431 with an audit record',
    send: get([`X-Big: ${'b'.repeat(17_000)}`]),
    status: [431],
    closed: true,
    upstream: [],
    audit: [{ status: 431 }],
  },
  {
    name: 'one header just under the limit (15 000 bytes) is forwarded intact',
    send: get([`X-Big: ${'b'.repeat(15_000)}`]),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.requests[0]!.all('x-big')).toEqual(['b'.repeat(15_000)]),
  },
  {
    name: '200 distinct headers are all forwarded',
    send: get(Array.from({ length: 200 }, (_, i) => `X-Many-${i}: v${i}`)),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.requests[0]!.headers.filter(([n]) => n.toLowerCase().startsWith('x-many-'))).toHaveLength(200),
  },
  {
    name: '2100 tiny headers (past Node\'s 2000-header count) overflow the header block: 431',
    send: get([...Array.from({ length: 2100 }, () => 'a:1'), 'X-Gatehouse-User: admin']),
    status: [431],
    closed: true,
    upstream: [],
    audit: [{ status: 431 }],
  },
  {
    name: '500 repeated headers with an identity claim last: the claim never reaches the upstream',
    send: get([...Array.from({ length: 500 }, () => 'a:1'), 'X-Gatehouse-User: admin']),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.raw().toString('latin1')).not.toMatch(/x-gatehouse-user: admin/i),
  },
];

const byteCases: HttpCase[] = [
  { name: 'NUL in a header value', send: get(['X-A: a\x00b']), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'bare CR in a header value', send: get(['X-A: a\rX-Gatehouse-User: admin']), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'bare LF splitting a header value into a claim', send: get(['X-A: a\nX-Gatehouse-User: admin']), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'NUL in a header name', send: get(['X-A\x00B: v']), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'space inside a header name', send: get(['X Gatehouse User: admin']), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'empty header name', send: get([': admin']), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'non-ASCII byte in a header name', send: get(['X-Caf\xe9: v']), status: [400], closed: true, upstream: [], audit: [malformed] },
  { name: 'DEL in a header value', send: get(['X-A: a\x7fb']), status: [400], closed: true, upstream: [], audit: [malformed] },
  {
    name: 'Latin-1 bytes in a header value (obs-text) are forwarded byte for byte',
    send: get(['X-Name: caf\xe9']),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => expect(upstream.requests[0]!.all('x-name')).toEqual(['caf\xe9']),
  },
  {
    name: 'UTF-8 bytes in a header value are forwarded byte for byte',
    send: get([`X-Name: ${Buffer.from('café ✓', 'utf8').toString('latin1')}`]),
    status: [200],
    upstream: [{ method: 'GET', target: '/web/x' }],
    audit: [allow()],
    check: (_x, { upstream }) => expect(Buffer.from(upstream.requests[0]!.all('x-name')[0] ?? '', 'latin1').toString('utf8')).toBe('café ✓'),
  },
];

describe('request headers from a hostile client', () => {
  describe('identity claims and hop-by-hop fields', () => {
    for (const c of claimCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('Connection', () => {
    for (const c of connectionCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('Host', () => {
    for (const c of hostCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('size and count', () => {
    for (const c of sizeCases) it(c.name, () => runHttpCase(g, c));
  });
  describe('bytes in names and values', () => {
    for (const c of byteCases) it(c.name, () => runHttpCase(g, c));
  });
});
