// Runs one data-driven hostile HTTP case against the shared gateway and checks all of it: statuses,
// refusal shape, close, exactly what the upstream parsed (with the gateway's headers), audit, liveness.
import { expect } from 'vitest';
import type { HostileGateway, UserName, AuditEntry } from './hostileGateway.ts';
import type { RawExchange } from './rawClient.ts';
import type { RecordedRequest, UpstreamRecorder } from './upstreamRecorder.ts';

export interface ExpectedUpstreamRequest {
  method: string;
  target: string;
  /** Exact body bytes the upstream must have parsed (default: empty). */
  body?: string | Buffer;
  /** Token user (default: the case's `as`); the certificate is always the case's `as`. */
  user?: UserName;
  /** Route name in x-gatehouse-route (default `web`). */
  route?: string;
}

export interface ExpectedAudit {
  status: number;
  /** 'either': a race the case cannot control decides (e.g. a bad chunk before or after forwarding). */
  decision?: 'allow' | 'deny' | 'either';
  reason?: RegExp;
  route?: string;
  path?: string;
  /** The raw request target the record keeps when it differs from `path`; null: no `target` field. */
  target?: string | null;
  method?: string;
}

export interface HttpCase {
  name: string;
  /** Client certificate (and default token) owner; default alice. */
  as?: UserName;
  /** Raw request bytes (latin1); `<AUTH>` becomes the Authorization line of `as`, `<AUTH:bob>` of bob. */
  send: string;
  /** Final response statuses, in order. */
  status: number[];
  /** Whether the gateway closes the connection (undefined: not checked). */
  closed?: boolean;
  /** Exactly the requests the upstream parses, in order ([] = not contacted). */
  upstream: ExpectedUpstreamRequest[];
  /** The raw answer of the `hop` upstream for this case (default: 200 with a small JSON body). */
  hopResponse?: string;
  /** Which recorder the upstream requests land on (default the shared one). */
  upstreamOf?: 'recorder' | 'userRecorder' | 'hopUpstream';
  /** The connection's `request` audit records, in order. */
  audit: ExpectedAudit[];
  /** Methods of the requests (for HEAD responses). */
  methods?: string[];
  /** More checks on the exchange. */
  check?: (x: RawExchange, ctx: CaseContext) => void | Promise<void>;
}

export interface CaseContext {
  g: HostileGateway;
  upstream: UpstreamRecorder;
  audit: AuditEntry[];
}

/** Replaces `<AUTH>` / `<AUTH:user>` with `Authorization: Bearer <token>`. */
export function withAuth(g: HostileGateway, raw: string, as: UserName): string {
  return raw.replace(/<AUTH(?::(alice|bob|admin))?>/g, (_m, who: UserName | undefined) => `Authorization: Bearer ${g.tokens[who ?? as]}`);
}

/** A request in CRLF form: request line, header lines, then the body. */
export function http(line: string, headers: string[], body = ''): string {
  return `${line}\r\n${headers.map((h) => h + '\r\n').join('')}\r\n${body}`;
}

/** The Host line of every case, and the placeholder `withAuth` turns into the caller's Authorization line. */
export const HOST_LINE = 'Host: localhost';
export const AUTH_LINE = '<AUTH>';

/** A Content-Length line for `body` as sent (latin1). */
export const contentLengthLine = (body: string): string => `Content-Length: ${Buffer.byteLength(body, 'latin1')}`;

/** One request the upstream should see (the `web` route's default target). */
export const upstreamSees = (method: string, target = '/web/x', body = '') => ({ method, target, body });

/** The record of a request allowed on the `web` route. */
export const allowedOnWeb = (path = '/web/x') => ({ status: 200, decision: 'allow' as const, route: 'web', path });

/** The record a parser refusal leaves. */
export const malformedRecord: ExpectedAudit = { status: 400, decision: 'deny', reason: /^malformed HTTP/ };

/** The parser refuses: 400, closed, upstream untouched, one "malformed HTTP" record. */
export function parserRefuses(name: string, send: string): HttpCase {
  return { name, send, status: [400], closed: true, upstream: [], audit: [malformedRecord] };
}

/**
 * A body the parser refuses after the headers were fine: the request may already have been admitted and
 * forwarded (its record then keeps decision allow) or not (deny); either way one record, status 400.
 */
export function bodyRefused(name: string, send: string): HttpCase {
  return { name, send, status: [400], closed: true, upstream: [], audit: [{ ...malformedRecord, decision: 'either' }] };
}

/** A chunked body holding `data` in one chunk. */
export function chunked(data: string): string {
  return data.length === 0 ? '0\r\n\r\n' : `${Buffer.byteLength(data, 'latin1').toString(16)}\r\n${data}\r\n0\r\n\r\n`;
}

const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'http2-settings', 'expect'];
const GATEWAY_IDENTITY = new Set(['x-gatehouse-user', 'x-gatehouse-groups', 'x-gatehouse-client-subject', 'x-gatehouse-client-issuer', 'x-gatehouse-client-fingerprint', 'x-gatehouse-route']);

/** What every forwarded request must look like, whatever the client sent. */
export function expectGatewayHeaders(g: HostileGateway, req: RecordedRequest, certOwner: UserName, tokenUser: string, route: string): void {
  const names = req.headers.map(([n]) => n.toLowerCase());
  expect(req.all('x-gatehouse-user'), 'x-gatehouse-user').toEqual([tokenUser]);
  expect(req.all('x-gatehouse-groups'), 'x-gatehouse-groups').toEqual(tokenUser === 'alice' ? ['staff'] : []);
  expect(req.all('x-gatehouse-route'), 'x-gatehouse-route').toEqual([route]);
  expect(req.all('x-gatehouse-client-subject'), 'x-gatehouse-client-subject').toEqual([`CN=${certOwner},O=gatehouse dev`]);
  expect(req.all('x-gatehouse-client-issuer'), 'x-gatehouse-client-issuer').toEqual(['CN=gatehouse dev CA']);
  expect(req.all('x-gatehouse-client-fingerprint'), 'x-gatehouse-client-fingerprint').toEqual([g.certs[certOwner].fingerprint]);
  expect(req.all('x-forwarded-for'), 'x-forwarded-for').toEqual(['127.0.0.1']);
  expect(req.all('x-forwarded-proto'), 'x-forwarded-proto').toEqual(['https']);
  expect(req.all('x-forwarded-host').length, 'x-forwarded-host count').toBeLessThanOrEqual(1);
  expect(names.filter((n) => n.startsWith('x-gatehouse-') && !GATEWAY_IDENTITY.has(n)), 'unknown x-gatehouse-* headers').toEqual([]);
  expect(names.filter((n) => HOP_BY_HOP.includes(n) || n.includes('_')), 'hop-by-hop or underscore headers').toEqual([]);
  expect(req.all('connection').every((v) => /^(keep-alive|close)$/i.test(v)), `connection ${JSON.stringify(req.all('connection'))}`).toBe(true);
  expect(req.all('transfer-encoding').every((v) => v.toLowerCase() === 'chunked'), 'transfer-encoding').toBe(true);
  expect(req.all('content-length').length + req.all('transfer-encoding').length, 'at most one framing header').toBeLessThanOrEqual(1);
  if (route !== 'fwd') expect(req.all('authorization'), 'authorization on a route without forwardToken').toEqual([]);
  expect(req.all('host').length, 'host count').toBe(1);
}

/** Refusals are `{"error": "<short reason>"}` and nothing else. */
export function expectRefusalShape(x: RawExchange): void {
  for (const r of x.finals) {
    if (r.status < 400) continue;
    let body: unknown;
    try {
      body = JSON.parse(r.text);
    } catch {
      body = r.text;
    }
    expect(body, `refusal body of ${r.status}`).toEqual({ error: expect.any(String) });
  }
}

/** Checks that the gateway still answers a plain request on a fresh connection. */
export async function expectStillServes(g: HostileGateway): Promise<void> {
  const x = await g.send(http('GET /web/still-serving HTTP/1.1', ['Host: localhost', `Authorization: Bearer ${g.tokens.bob}`]), { as: 'bob', expectResponses: 1, quietMs: 0 });
  expect(x.finals.map((r) => r.status), 'gateway still serves').toEqual([200]);
}

export async function runHttpCase(g: HostileGateway, c: HttpCase): Promise<void> {
  const as = c.as ?? 'alice';
  const upstream = g[c.upstreamOf ?? 'recorder'];
  g.resetUpstreams();
  if (c.hopResponse !== undefined) {
    const answer = c.hopResponse;
    g.hopUpstream.respondWith(() => answer);
  }
  const x = await g.send(withAuth(g, c.send, as), {
    as,
    expectResponses: c.status.length,
    quietMs: 50,
    ...(c.closed === true && { untilClosed: true, timeoutMs: 2500 }),
    ...(c.methods && { methods: c.methods }),
  });
  expect(x.error, 'TLS/socket error').toBeUndefined();
  expect(x.finals.map((r) => r.status), `statuses; raw answer:\n${x.raw.toString('latin1').slice(0, 600)}`).toEqual(c.status);
  expect(x.finals.every((r) => r.complete), 'responses complete').toBe(true);
  expectRefusalShape(x);
  if (c.closed !== undefined) expect(x.closedByGateway, 'gateway closed the connection').toBe(c.closed);

  if (c.upstream.length > 0) await upstream.waitForRequests(c.upstream.length, 2000);
  // Pipelined requests may reach the upstream on several pooled connections, in any order: compare sorted.
  const key = (r: { method: string; target: string; body: string }) => `${r.target} ${r.method} ${r.body}`;
  const byKey = <T extends { method: string; target: string; body: string }>(list: T[]) => [...list].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  const got = byKey(upstream.requests.map((r) => ({ method: r.method, target: r.target, body: r.body.toString('latin1'), req: r })));
  const want = byKey(c.upstream.map((u) => ({ method: u.method, target: u.target, body: Buffer.isBuffer(u.body) ? u.body.toString('latin1') : (u.body ?? ''), u })));
  expect(got.map(({ req: _r, ...rest }) => rest), 'requests the upstream parsed').toEqual(want.map(({ u: _u, ...rest }) => rest));
  expect(upstream.parseErrors, 'upstream strict-parser errors').toEqual([]);
  expect(upstream.leftover(), 'bytes left unparsed at the upstream (a smuggled prefix)').toBe(0);
  want.forEach(({ u }, i) => expectGatewayHeaders(g, got[i]!.req, as, u.user ?? as, u.route ?? 'web'));

  const audit = await g.auditOf(x, c.audit.length, 1500);
  // A record that should not exist may come late: give it a moment once the expected ones are in.
  await new Promise((r) => setTimeout(r, 30));
  const records = await g.auditOf(x, c.audit.length, 0);
  expect(records.map((r) => ({ status: r.status, decision: r.decision, reason: r.reason })), 'audit records').toHaveLength(c.audit.length);
  c.audit.forEach((a, i) => {
    const r = records[i]!;
    expect(r.status, `audit[${i}].status`).toBe(a.status);
    if (a.decision === 'either') expect(['allow', 'deny'], `audit[${i}].decision`).toContain(r.decision);
    else expect(r.decision, `audit[${i}].decision`).toBe(a.decision ?? (a.status < 400 ? 'allow' : 'deny'));
    if (a.reason) expect(r.reason ?? '', `audit[${i}].reason`).toMatch(a.reason);
    if (a.route !== undefined) expect(r.route, `audit[${i}].route`).toBe(a.route);
    if (a.path !== undefined) expect(r.path, `audit[${i}].path`).toBe(a.path);
    if (a.method !== undefined) expect(r.method, `audit[${i}].method`).toBe(a.method);
    if (a.target !== undefined) expect(r.target, `audit[${i}].target`).toBe(a.target ?? undefined);
  });
  if (c.check) await c.check(x, { g, upstream, audit });
  await expectStillServes(g);
}
