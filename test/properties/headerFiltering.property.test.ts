// Properties of the header policy over generated header lists: framing is the gateway's, hop-by-hop
// and Connection-named fields never cross, and only the gateway speaks about the caller's identity.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../src/forward/upstreamHeaders.ts';
import type { BodyFraming, ForwardedCaller } from '../../src/forward/upstreamHeaders.ts';

const numRuns = 300;

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authorization', 'http2-settings', 'expect'];
const FRAMING = ['content-length', 'transfer-encoding'];
/** Every client-supplied identity claim the contract names (prefixes end in `-` or are matched as prefixes). */
const CLAIMS = [
  'forwarded', 'x-real-ip', 'true-client-ip', 'client-ip', 'x-client-ip', 'x-cluster-client-ip', 'cf-connecting-ip',
  'fastly-client-ip', 'x-remote-user', 'x-remote-addr', 'x-forwarded-server', 'x-original-url', 'x-rewrite-url',
  'x-original-forwarded-for', 'remote-user', 'x-user',
];
const CLAIM_PREFIXES = ['x-gatehouse-', 'x-forwarded-', 'x-auth-request-', 'x-client-cert', 'x-ssl-', 'ssl-client-'];
const CLAIM_EXAMPLES = [
  ...CLAIMS, 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-user',
  'x-auth-request-user', 'x-auth-request-email', 'x-client-cert', 'x-client-cert-chain', 'x-ssl-client-dn', 'x-ssl-client-verify',
  'ssl-client-cert', 'ssl-client-s-dn',
];
const GATEHOUSE = ['user', 'groups', 'client-subject', 'client-issuer', 'client-fingerprint', 'route'].map((n) => `x-gatehouse-${n}`);
const UNDERSCORED = ['x_gatehouse_user', 'x-gatehouse_user', 'x_forwarded_for', 'remote_user', 'ssl_client_s_dn', 'content_length', 'transfer_encoding', 'x_real_ip'];
/** End-to-end fields nothing in the contract removes: they must reach the upstream. */
const ORDINARY = ['accept', 'content-type', 'cookie', 'user-agent', 'x-request-id', 'cache-control', 'if-none-match'];
/** Fields the gateway writes itself; a client naming them in Connection cannot make them disappear. */
const GATEWAY_SET = new Set([...FRAMING, 'host', 'connection', 'upgrade', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', ...GATEHOUSE]);

const isClaim = (name: string): boolean => CLAIMS.includes(name) || CLAIM_PREFIXES.some((p) => name.startsWith(p));

const fieldName = fc.oneof(
  fc.constantFrom(...FRAMING, ...HOP_BY_HOP, ...CLAIM_EXAMPLES, ...GATEHOUSE, 'x-gatehouse-admin', ...UNDERSCORED, ...ORDINARY, 'authorization'),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/),
);
/** Values as a client writes them, including lists naming other fields (for Connection) and framing words. */
const fieldValue = fc.oneof(
  { arbitrary: fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,18}[\x21-\x7e])?$/), weight: 4 },
  { arbitrary: fc.array(fieldName, { minLength: 1, maxLength: 4 }).chain((names) => fc.constantFrom(names.join(','), names.join(', '), ` ${names.join(' ,')} `)), weight: 4 },
  { arbitrary: fc.constantFrom('close', 'keep-alive', 'upgrade', 'websocket', 'chunked', 'gzip, chunked', '100-continue', 'Bearer aGVsbG8', '0', '10', '-1', ''), weight: 2 },
  { arbitrary: fc.nat().map(String), weight: 1 },
  // obs-text as Node hands it over (latin1), with a tab inside.
  { arbitrary: fc.string({ unit: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 6 }).map((s) => `a\t${s}`), weight: 1 },
  // Never produced by Node's parser; the policy must still not pass them on.
  { arbitrary: fc.constantFrom('a\r\nx-gatehouse-user: root', 'b\nc', 'nul\0'), weight: 1 },
);
/** Header lists as a client sends them; often with a Connection field naming fields the list carries. */
const rawHeaderList = fc
  .array(fc.tuple(fc.mixedCase(fieldName), fieldValue), { maxLength: 24 })
  .chain((fields) =>
    fc.record({
      fields: fc.constant(fields),
      host: fc.option(fc.constantFrom('gateway.test', 'gateway.test:8443', 'Gateway.Test'), { nil: undefined }),
      listed: fc.option(fc.subarray(fields.map(([name]) => name)), { nil: undefined }),
      at: fc.nat({ max: fields.length }),
    }),
  )
  .map(({ fields, host, listed, at }) => {
    // One Host at most: the parser refuses two before this policy runs.
    const raw: string[] = fields.filter(([name]) => name.toLowerCase() !== 'host').flat();
    if (listed !== undefined) raw.splice(2 * Math.min(at, raw.length / 2), 0, 'Connection', listed.join(', '));
    return host === undefined ? raw : ['Host', host, ...raw];
  });

/** Caller fields come from a certificate and a token: any text, CR/LF and non-ASCII included. */
const callerText = fc.string({ unit: 'binary', maxLength: 24 });
const caller: fc.Arbitrary<ForwardedCaller> = fc.record({
  identity: fc.record({
    cn: callerText,
    subject: callerText,
    issuer: callerText,
    serial: fc.stringMatching(/^[0-9a-f]{1,20}$/),
    fingerprint: fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `sha256:${h}`),
    sans: fc.constant([]),
    notAfter: fc.constant('2030-01-01T00:00:00.000Z'),
  }),
  sourceIp: fc.oneof(fc.ipV4(), fc.ipV6()),
  user: callerText,
  groups: fc.array(callerText.filter((g) => g !== '' && !g.includes(',')), { maxLength: 3 }),
  route: fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
});
const framing: fc.Arbitrary<BodyFraming> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.constant({ kind: 'chunked' as const }),
  fc.nat({ max: 2 ** 40 }).map((length) => ({ kind: 'length' as const, length })),
);
/** A WebSocket handshake is a GET without a body, so an upgrade carries no framing. */
const requestCase = fc.oneof(
  fc.record({ framing, upgrade: fc.constant(undefined) }),
  fc.record({ framing: fc.constant({ kind: 'none' as const }), upgrade: fc.constant('websocket' as const) }),
);

/** Output fields by lower-case name, each with its values in order. */
function fieldsOf(headers: Record<string, string | string[]>): Map<string, string[]> {
  const fields = new Map<string, string[]>();
  for (const [name, value] of Object.entries(headers)) {
    const key = name.toLowerCase();
    expect(fields.has(key), `field ${name} appears under two spellings`).toBe(false);
    fields.set(key, Array.isArray(value) ? [...value] : [value]);
  }
  return fields;
}

/** Names listed by every Connection field of a raw list, lower case. */
function connectionNamed(raw: readonly string[]): Set<string> {
  const named = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() !== 'connection') continue;
    for (const token of (raw[i + 1] as string).split(',')) if (token.trim() !== '') named.add(token.trim().toLowerCase());
  }
  return named;
}

function clientValues(raw: readonly string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) if ((raw[i] as string).toLowerCase() === name) values.push(raw[i + 1] as string);
  return values;
}

function decoded(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

/** The gateway states the caller's value, as is or percent-encoded to stay visible ASCII. */
function expectStates(value: string | undefined, expected: string, what: string): void {
  expect(value, what).toBeDefined();
  if (value === undefined) return;
  expect(value === expected || decoded(value) === expected, `${what}: ${JSON.stringify(value)} does not state ${JSON.stringify(expected)}`).toBe(true);
}

function expectSafeValues(fields: Map<string, string[]>): void {
  for (const [name, values] of fields) {
    expect(name).not.toContain('_');
    expect(name).toMatch(/^[!#$%&'*+\-.^`|~0-9a-z]+$/);
    for (const value of values) expect(value, `value of ${name}`).not.toMatch(/[\r\n\0]/);
  }
}

describe('upstreamRequestHeaders (properties)', () => {
  it('states the framing the gateway read, and only that', () => {
    fc.assert(
      fc.property(rawHeaderList, caller, requestCase, fc.boolean(), (raw, who, { framing, upgrade }, keepToken) => {
        const fields = fieldsOf(upstreamRequestHeaders(raw, { caller: who, keepToken, framing, ...(upgrade && { upgrade }) }));
        if (upgrade) {
          expect(fields.get('connection')).toEqual(['upgrade']);
          expect(fields.get('upgrade')).toEqual(['websocket']);
        }
        if (framing.kind === 'length') {
          expect(fields.get('content-length')).toEqual([String(framing.length)]);
          expect(fields.has('transfer-encoding')).toBe(false);
        } else if (framing.kind === 'chunked') {
          expect(fields.get('transfer-encoding')).toEqual(['chunked']);
          expect(fields.has('content-length')).toBe(false);
        } else {
          expect(fields.has('content-length')).toBe(false);
          expect(fields.has('transfer-encoding')).toBe(false);
        }
      }),
      { numRuns },
    );
  });

  it('passes no hop-by-hop field and nothing the client named in Connection', () => {
    fc.assert(
      fc.property(rawHeaderList, caller, requestCase, fc.boolean(), (raw, who, { framing, upgrade }, keepToken) => {
        const fields = fieldsOf(upstreamRequestHeaders(raw, { caller: who, keepToken, framing, ...(upgrade && { upgrade }) }));
        const setByGateway = new Set<string>();
        if (upgrade) setByGateway.add('connection').add('upgrade');
        if (framing.kind === 'chunked') setByGateway.add('transfer-encoding');
        for (const name of HOP_BY_HOP) if (!setByGateway.has(name)) expect(fields.has(name), `hop-by-hop ${name}`).toBe(false);
        for (const name of connectionNamed(raw)) {
          if (!GATEWAY_SET.has(name)) expect(fields.has(name), `${name} is named in the client's Connection`).toBe(false);
        }
        expectSafeValues(fields);
      }),
      { numRuns },
    );
  });

  it('speaks about the caller in its own words only: every x-gatehouse-* once, forwarding fields its own, no client claim', () => {
    fc.assert(
      fc.property(rawHeaderList, caller, requestCase, fc.boolean(), (raw, who, { framing, upgrade }, keepToken) => {
        const fields = fieldsOf(upstreamRequestHeaders(raw, { caller: who, keepToken, framing, ...(upgrade && { upgrade }) }));
        const expected = new Set(GATEHOUSE.filter((n) => n !== 'x-gatehouse-groups' || who.groups.length > 0));
        const stated = [...fields.keys()].filter((n) => n.startsWith('x-gatehouse-'));
        expect(new Set(stated)).toEqual(expected);
        const one = (name: string): string | undefined => {
          const values = fields.get(name) ?? [];
          expect(values, `${name} appears once`).toHaveLength(1);
          return values[0];
        };
        expectStates(one('x-gatehouse-user'), who.user, 'x-gatehouse-user');
        expectStates(one('x-gatehouse-client-subject'), who.identity.subject, 'x-gatehouse-client-subject');
        expectStates(one('x-gatehouse-client-issuer'), who.identity.issuer, 'x-gatehouse-client-issuer');
        expectStates(one('x-gatehouse-client-fingerprint'), who.identity.fingerprint, 'x-gatehouse-client-fingerprint');
        expectStates(one('x-gatehouse-route'), who.route, 'x-gatehouse-route');
        if (who.groups.length > 0) {
          const groups = (one('x-gatehouse-groups') ?? '').split(',');
          expect(groups).toHaveLength(who.groups.length);
          groups.forEach((g, i) => expectStates(g, who.groups[i] as string, 'x-gatehouse-groups'));
        }
        expect(fields.get('x-forwarded-for')).toEqual([who.sourceIp]);
        expect(fields.get('x-forwarded-proto')).toEqual(['https']);
        const host = clientValues(raw, 'host')[0];
        if (fields.has('x-forwarded-host') && host !== undefined) expectStates(one('x-forwarded-host'), host, 'x-forwarded-host');
        if (host === undefined) expect(fields.has('x-forwarded-host')).toBe(false);
        for (const name of fields.keys()) {
          if (isClaim(name)) expect(GATEWAY_SET.has(name), `client claim ${name} reached the upstream`).toBe(true);
        }
        expectSafeValues(fields);
      }),
      { numRuns },
    );
  });

  it('forwards Authorization only when the route keeps the token, never Proxy-Authorization, and keeps ordinary fields', () => {
    fc.assert(
      fc.property(rawHeaderList, caller, framing, fc.boolean(), (raw, who, bodyFraming, keepToken) => {
        const fields = fieldsOf(upstreamRequestHeaders(raw, { caller: who, keepToken, framing: bodyFraming }));
        const named = connectionNamed(raw);
        expect(fields.has('proxy-authorization')).toBe(false);
        const sentTokens = clientValues(raw, 'authorization').filter((v) => !/[\r\n\0]/.test(v));
        if (!keepToken) expect(fields.has('authorization')).toBe(false);
        // Authorization is a singleton: admission saw the first one, so the upstream sees that one alone.
        else if (sentTokens.length > 0 && !named.has('authorization')) expect(fields.get('authorization')).toEqual(sentTokens.slice(0, 1));
        for (const name of ORDINARY) {
          const sent = clientValues(raw, name).filter((v) => !/[\r\n\0]/.test(v));
          if (sent.length === 0 || named.has(name)) continue;
          if (SINGLETONS.has(name)) {
            expect(fields.get(name), `${name} is a singleton: the first value only`).toEqual(sent.slice(0, 1));
            continue;
          }
          const passed = (fields.get(name) ?? []).join('\n');
          for (const value of sent) expect(passed, `${name} lost ${JSON.stringify(value)}`).toContain(value);
        }
      }),
      { numRuns },
    );
  });
});

/** Fields Node keeps only the first of (so the gateway forwards only the first). */
const SINGLETONS = new Set(['age', 'authorization', 'content-type', 'etag', 'expires', 'from', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'referer', 'retry-after', 'server', 'user-agent']);

describe('downstreamResponseHeaders (properties)', () => {
  const RESPONSE_HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
  const responseName = fc.oneof(
    fc.constantFrom(...RESPONSE_HOP_BY_HOP, 'content-length', 'content-type', 'set-cookie', 'cache-control', 'x-powered-by', 'etag', 'vary', 'x-frame-options'),
    fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/),
  );
  const responseValue = fc.oneof(
    fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,18}[\x21-\x7e])?$/),
    fc.array(responseName, { minLength: 1, maxLength: 4 }).map((names) => names.join(', ')),
    fc.constantFrom('close', 'keep-alive', 'chunked', 'websocket', 'a=1; Path=/', 'b=2; HttpOnly'),
  );
  const responseRaw = fc.array(fc.tuple(fc.mixedCase(responseName), responseValue), { maxLength: 20 }).map((fields) => fields.flat());

  it('passes no hop-by-hop field and nothing the upstream named in Connection; keeps every Set-Cookie as its own value', () => {
    fc.assert(
      fc.property(responseRaw, (raw) => {
        const fields = fieldsOf(downstreamResponseHeaders(raw));
        for (const name of RESPONSE_HOP_BY_HOP) expect(fields.has(name), `hop-by-hop ${name}`).toBe(false);
        const named = connectionNamed(raw);
        for (const name of named) expect(fields.has(name), `${name} is named in the upstream's Connection`).toBe(false);
        expectSafeValues(fields);
        for (const name of ['set-cookie', 'content-type', 'etag']) {
          const sent = clientValues(raw, name);
          if (sent.length === 0 || named.has(name)) continue;
          if (name === 'set-cookie') expect(fields.get(name)).toEqual(sent);
          else for (const value of sent) expect((fields.get(name) ?? []).join('\n')).toContain(value);
        }
      }),
      { numRuns },
    );
  });
});
