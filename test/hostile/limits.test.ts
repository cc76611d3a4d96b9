// Request-rate and token-size limits under a hostile client: 429 with Retry-After per certificate while
// others keep working, rate-limited refusals leave bounded audit records, oversized tokens are not parsed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import { expectRefusalShape, http } from './support/httpCase.ts';
import { rawExchange, type RawClientTarget, type RawExchange } from './support/rawClient.ts';

const MAX_TOKEN_BYTES = 1024;
let g: HostileGateway;
/** Certificates that take no part in the rate-limit cases, so their buckets stay full. */
let carol: RawClientTarget;
let dave: RawClientTarget;

beforeAll(async () => {
  g = await startHostileGateway({ extraTop: `limits:\n  requestsPerSecond: 0.5\n  requestBurst: 3\n  maxTokenBytes: ${MAX_TOKEN_BYTES}\n` });
  const asTarget = async (name: string) => {
    const c = await g.h.pki.client(name);
    return { port: g.h.port, ca: g.h.pki.caCert, cert: c.cert, key: c.key };
  };
  carol = await asTarget('carol');
  dave = await asTarget('dave');
});
afterAll(async () => {
  await g?.stop();
});

const get = (path: string, token: string) => http(`GET ${path} HTTP/1.1`, ['Host: localhost', `Authorization: Bearer ${token}`]);
const statuses = (x: RawExchange) => x.finals.map((r) => r.status);

/** A token of `user` whose base64 form is about `bytes` long (padded with a fact). */
function tokenOfLength(user: string, bytes: number): string {
  let pad = Math.max(0, bytes - 300);
  for (let i = 0; i < 40; i++) {
    const t = g.mint(user, `pad("${'p'.repeat(pad)}");`);
    if (Math.abs(t.length - bytes) <= 8) return t;
    pad = Math.max(0, pad + Math.round(((bytes - t.length) * 3) / 4));
  }
  throw new Error(`could not mint a token of ${bytes} bytes`);
}

describe('request rate per client certificate (burst 3, 0.5/s)', () => {
  it('the fourth request in a burst gets 429 with Retry-After >= 1 and never reaches the upstream', async () => {
    g.resetUpstreams();
    const x = await g.send([1, 2, 3, 4].map((n) => get(`/web/r${n}`, g.tokens.alice)).join(''), { as: 'alice', expectResponses: 4 });
    expect(statuses(x)).toEqual([200, 200, 200, 429]);
    const refusal = x.finals[3]!;
    expect(refusal.header('retry-after')).toMatch(/^\d+$/);
    expect(Number(refusal.header('retry-after'))).toBeGreaterThanOrEqual(1);
    expectRefusalShape(x);
    await g.recorder.waitForRequests(3);
    expect(g.recorder.requests.map((r) => r.target).sort()).toEqual(['/web/r1', '/web/r2', '/web/r3']);
    const audit = await g.auditOf(x, 4);
    expect(audit.map((r) => [r.status, r.decision])).toEqual([[200, 'allow'], [200, 'allow'], [200, 'allow'], [429, 'deny']]);
  });

  it('the limit follows the certificate, not the connection: a new connection from alice is refused too', async () => {
    g.resetUpstreams();
    const x = await g.send(get('/web/again', g.tokens.alice), { as: 'alice', expectResponses: 1 });
    expect(statuses(x)).toEqual([429]);
    expect(Number(x.finals[0]!.header('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(g.recorder.requests).toEqual([]);
  });

  it('another certificate (bob) still gets 200 while alice is limited', async () => {
    g.resetUpstreams();
    const x = await g.send(get('/web/bob', g.tokens.bob), { as: 'bob', expectResponses: 1 });
    expect(statuses(x)).toEqual([200]);
    const [req] = await g.recorder.waitForRequests(1);
    expect(req!.all('x-gatehouse-user')).toEqual(['bob']);
  });

  it('alice\'s certificate with bob\'s token is still alice\'s bucket: 429', async () => {
    const x = await g.send(get('/web/swap', g.tokens.bob), { as: 'alice', expectResponses: 1 });
    expect(statuses(x)).toEqual([429]);
  });

  it('a flood of 20 refused requests leaves at most 10 audit records', async () => {
    g.resetUpstreams();
    const x = await g.send(Array.from({ length: 20 }, (_, i) => get(`/web/flood${i}`, g.tokens.alice)).join(''), { as: 'alice', expectResponses: 20 });
    expect(statuses(x)).toEqual(Array(20).fill(429));
    expect(g.recorder.requests).toEqual([]);
    await new Promise((r) => setTimeout(r, 300));
    const records = g.allAuditOf(x).filter((r) => r.event === 'request');
    expect(records.length).toBeGreaterThanOrEqual(1);
    expect(records.length).toBeLessThanOrEqual(10);
    expect(records.every((r) => r.status === 429 && r.decision === 'deny')).toBe(true);
  });

  it('the bucket refills: after Retry-After seconds alice gets 200 again', async () => {
    const probe = await g.send(get('/web/probe', g.tokens.alice), { as: 'alice', expectResponses: 1 });
    expect(statuses(probe)).toEqual([429]);
    const wait = Number(probe.finals[0]?.header('retry-after') ?? 2);
    expect(wait).toBeLessThanOrEqual(5);
    await new Promise((r) => setTimeout(r, wait * 1000 + 200));
    const x = await g.send(get('/web/refilled', g.tokens.alice), { as: 'alice', expectResponses: 1 });
    expect(statuses(x)).toEqual([200]);
  }, 15_000);
});

describe(`limits.maxTokenBytes (${MAX_TOKEN_BYTES})`, () => {
  it('a valid token just under the limit is accepted', async () => {
    g.resetUpstreams();
    const token = tokenOfLength('carol', MAX_TOKEN_BYTES - 40);
    expect(token.length).toBeLessThanOrEqual(MAX_TOKEN_BYTES);
    const x = await rawExchange(carol, get('/web/small', token), { expectResponses: 1 });
    expect(statuses(x)).toEqual([200]);
    expect(g.recorder.requests.map((r) => r.target)).toEqual(['/web/small']);
  });

  const oversized: Array<{ name: string; token: () => string }> = [
    { name: 'a valid token over the limit', token: () => tokenOfLength('carol', MAX_TOKEN_BYTES + 200) },
    { name: 'a valid admin token over the limit', token: () => tokenOfLength('admin', MAX_TOKEN_BYTES + 2000) },
    { name: '8000 characters of base64 junk', token: () => 'A'.repeat(8000) },
  ];
  for (const o of oversized) {
    it(`${o.name}: 401 "token too large", not parsed, upstream untouched`, async () => {
      g.resetUpstreams();
      const token = o.token();
      expect(token.length).toBeGreaterThan(MAX_TOKEN_BYTES);
      const x = await rawExchange(dave, get('/web/big', token), { expectResponses: 1 });
      expect(statuses(x)).toEqual([401]);
      expect(JSON.parse(x.finals[0]!.text)).toEqual({ error: 'token too large' });
      expect(g.recorder.requests).toEqual([]);
      const audit = await g.auditOf(x, 1);
      expect(audit.map((r) => [r.status, r.decision])).toEqual([[401, 'deny']]);
      expect(audit[0]!.reason).toMatch(/too large/);
      expect(audit[0]!.token).toBeUndefined();
    });
  }
});

it('the gateway still serves after the file', async () => {
  const x = await rawExchange(carol, get('/web/end', g.tokens.bob), { expectResponses: 1 });
  expect(statuses(x)).toEqual([200]);
});
