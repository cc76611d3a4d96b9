// Records a client can make long or many (issue 16, findings 1 and 7): a token whose failing check prints
// megabytes, long paths, tunnel names and certificate subjects, and a crowd of addresses without certificates.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGatehouse } from '../support/gatewayHarness.ts';
import { rawTcp } from '../support/rawClients.ts';
import { certificateVariants } from './support/certVariants.ts';
import { auditMark, expectStillServes, recordAfter } from './support/caseChecks.ts';
import { startHostileGateway, type AuditEntry, type HostileGateway } from './support/hostileGateway.ts';
import { rawExchange } from './support/rawClient.ts';

/** The default audit.maxRecordBytes. */
const CAP = 16_384;
const CUT = /…\[cut (\d+) bytes sha256:([0-9a-f]{64})\]/;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let g: HostileGateway;
let metricsBase: string;

beforeAll(async () => {
  // Headers up to 64 KiB are within this gateway's limits: a field alone can be longer than a record may be.
  // The engine-time budget is out of the way: the flood below would otherwise spend alice's for the cases after it.
  g = await startHostileGateway({ extraTop: 'limits:\n  maxHeaderBytes: 65536\n  engineMsPerSecond: 1000000\n  engineBurstMs: 1000000\nmetrics:\n  listen: 127.0.0.1:0\n' });
  metricsBase = `http://${String((await g.h.waitForAudit((r) => r.event === 'gateway.start')).detail?.metrics)}`;
});
afterAll(async () => {
  await g?.stop();
});

/** The audit file's lines as written (bytes), with their parsed records. */
function auditLines(): Array<{ bytes: number; record: AuditEntry }> {
  const text = readFileSync(g.h.auditFile, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean)
    .map((line) => ({ bytes: Buffer.byteLength(line), record: JSON.parse(line) as AuditEntry }));
}

/** Alice's own token with a block she appended herself (no key needed). */
function appendBlock(token: string, code: string): string {
  const block = biscuit.Biscuit.block_builder();
  block.addCode(code);
  return biscuit.Biscuit.fromBase64(token, biscuit.PublicKey.fromString(g.h.rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519)).appendBlock(block).toBase64();
}

/** A check biscuit stores in a few KB (one string, 540 references) and prints in 1.46 MB. */
const amplifyingCheck = `check if path($p), [${Array.from({ length: 540 }, () => JSON.stringify('x'.repeat(2700))).join(', ')}].contains($p)`;

const get = (path: string, token: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`;

describe('a token whose failing check prints 1.46 MB', () => {
  let token: string;
  beforeAll(() => {
    // A token family of its own: a request past the engine's deadline holds back its whole family for a while.
    token = appendBlock(g.mint('alice'), `${amplifyingCheck};`);
  });

  it('is under maxTokenBytes, is denied, and its record is within the cap and names the check by its hash', async () => {
    expect(token.length).toBeLessThan(8192);
    const x = await g.send(get('/web/amplified', token), { expectResponses: 1, timeoutMs: 15_000 });
    expect(x.finals[0]?.status).toBe(403);
    const [record] = await g.auditOf(x);
    expect(record?.decision).toBe('deny');
    const line = auditLines().find((l) => l.record.req === record?.req);
    expect(line?.bytes).toBeLessThanOrEqual(CAP);
    expect(record?.reason).toContain('block 1 check 0');
    const [, cutBytes, hash] = CUT.exec(record?.reason ?? '') ?? [];
    expect(Number(cutBytes)).toBeGreaterThan(1_400_000);
    // The hash is of the check exactly as biscuit prints it: the token's holder can show which it was.
    expect(hash).toBe(sha256(amplifyingCheck));
  });

  it('eight connections repeating it: every request denied, a bystander served, the chain verifies', async () => {
    const mark = auditMark(g);
    const attacker = Array.from({ length: 8 }, async (_, c) => {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i += 1) statuses.push((await g.send(get(`/web/amp-${c}-${i}`, token), { expectResponses: 1, timeoutMs: 15_000 })).finals[0]?.status ?? 0);
      return statuses;
    });
    const bystander = (async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 10; i += 1) statuses.push((await g.send(get(`/web/bystander-${i}`, g.tokens.bob), { as: 'bob', expectResponses: 1, timeoutMs: 15_000 })).finals[0]?.status ?? 0);
      return statuses;
    })();
    const results = await Promise.all(attacker);
    for (const statuses of results) for (const s of statuses) expect([403, 429]).toContain(s);
    expect(await bystander).toEqual(Array.from({ length: 10 }, () => 200));
    await recordAfter(g, mark, (r) => r.path === '/web/bystander-9');
    const largest = Math.max(...auditLines().map((l) => l.bytes));
    expect(largest).toBeLessThanOrEqual(CAP);
    const verify = await runGatehouse(['audit', 'verify', '--unsigned', '--live', '300', g.h.auditFile]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  }, 90_000);
});

it('twelve such checks in one block: the reason lists eight, each cut, and counts the rest', async () => {
  const check = `check if path($p), [${Array.from({ length: 10 }, () => JSON.stringify('y'.repeat(2700))).join(', ')}].contains($p)`;
  // bob's certificate: the flood above spent alice's authorization engine time (limits.engineMsPerSecond).
  const token = appendBlock(g.mint('bob'), Array.from({ length: 12 }, () => `${check};`).join('\n'));
  expect(token.length).toBeLessThan(8192);
  const x = await g.send(get('/web/twelve-checks', token), { as: 'bob', expectResponses: 1, timeoutMs: 15_000 });
  expect(x.finals[0]?.status).toBe(403);
  const [record] = await g.auditOf(x);
  const line = auditLines().find((l) => l.record.req === record?.req);
  expect(line?.bytes).toBeLessThanOrEqual(CAP);
  expect(record?.reason).toMatch(/block 1 check 7: check if path/);
  expect(record?.reason).not.toMatch(/block 1 check 8:/);
  expect(record?.reason).toMatch(/; and 4 more/);
  expect(record?.reason?.match(new RegExp(CUT.source, 'g'))).toHaveLength(8);
});

describe('fields longer than a record may be', () => {
  it('a 20 KB path with a 10 KB query: the record is within the cap and keeps the start and the hash of each', async () => {
    const path = `/web/${'p'.repeat(20_000)}`;
    const x = await g.send(`GET ${path}?q=${'q'.repeat(10_000)} HTTP/1.1\r\nHost: localhost\r\n${g.auth()}Connection: close\r\n\r\n`, { expectResponses: 1 });
    expect(x.finals[0]?.status).toBe(200);
    const [record] = await g.auditOf(x);
    const line = auditLines().find((l) => l.record.req === record?.req);
    expect(line?.bytes).toBeLessThanOrEqual(CAP);
    expect(record?.cut?.bytes).toBeGreaterThan(30_000);
    expect(record?.path?.startsWith('/web/ppp')).toBe(true);
    expect(CUT.exec(record?.path ?? '')?.[2]).toBe(sha256(path));
    expect(CUT.exec(record?.target ?? '')?.[2]).toBe(sha256(`${path}?q=${'q'.repeat(10_000)}`));
    expect(record).toMatchObject({ event: 'request', decision: 'allow', status: 200, route: 'web', method: 'GET' });
  });

  it('a CONNECT to a 30 KB tunnel name: refused, and its record is within the cap (the name is cut where it is read)', async () => {
    const name = `${'t'.repeat(30_000)}.example`;
    const x = await g.send(`CONNECT ${name}:443 HTTP/1.1\r\nHost: ${name}:443\r\n${g.auth()}\r\n`, { expectResponses: 1 });
    const status = x.finals[0]?.status ?? 0;
    expect(status).toBeGreaterThanOrEqual(400);
    const [record] = await g.auditOf(x);
    expect(record?.status).toBe(status);
    const line = auditLines().find((l) => l.record.req === record?.req);
    expect(line?.bytes).toBeLessThanOrEqual(CAP);
  });

  it('a certificate with a 20 KB subject: every record of its connection is within the cap and keeps the hash of the subject', async () => {
    const variants = await certificateVariants(g.h.pki.dir, join(g.h.dir, 'variants'));
    const units = Array.from({ length: 300 }, (_, i) => ({ OU: [`unit-${i}-${'u'.repeat(56)}`] }));
    const long = await variants.signed('long-subject', { name: 'alice', subject: [{ O: ['gatehouse dev'] }, ...units, { CN: ['alice'] }] });
    const x = await rawExchange({ port: g.h.port, ca: g.h.pki.caCert, cert: long.cert, key: long.key }, get('/web/long-subject', g.tokens.alice), { expectResponses: 1 });
    expect(x.finals[0]?.status).toBe(200);
    const [record] = await g.auditOf(x);
    const lines = auditLines().filter((l) => l.record.conn === record?.conn);
    expect(lines.map((l) => l.record.event)).toEqual(expect.arrayContaining(['connection.open', 'request']));
    for (const l of lines) expect(l.bytes).toBeLessThanOrEqual(CAP);
    expect(record?.client?.subject).toMatch(CUT);
    expect(record?.client?.fingerprint).toBe(long.fingerprint);
  });
});

describe('a crowd of addresses without certificates', () => {
  it('2,000 plaintext connections from 2,000 loopback addresses: bounded tls.reject records, summaries, a metric, and service throughout', async () => {
    const mark = auditMark(g);
    const started = performance.now();
    const addresses = Array.from({ length: 2000 }, (_, i) => `127.77.${Math.floor(i / 250)}.${(i % 250) + 1}`);
    for (let i = 0; i < addresses.length; i += 100) {
      await Promise.all(
        addresses.slice(i, i + 100).map(async (address) => {
          const c = await rawTcp(g.h.port, address);
          c.socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
          await c.closed;
        }),
      );
      if (i === 1000) await expectStillServes(g);
    }
    // The budget is per 10 s window: a slow machine may spread the crowd over more than one.
    const windows = Math.ceil((performance.now() - started) / 10_000);
    await expectStillServes(g);
    const fromCrowd = (r: AuditEntry) => r.event === 'tls.reject' && (r.source ?? '').startsWith('127.77.');
    const written = g.h.audit().slice(mark).filter(fromCrowd);
    expect(written.length).toBeGreaterThan(0);
    expect(written.length).toBeLessThanOrEqual(100 * windows);
    // Each window's summary comes at its end: wait until they account for every connection.
    const suppressedSoFar = () =>
      g.h
        .audit()
        .slice(mark)
        .filter((r) => r.event === 'audit.suppressed')
        .flatMap((r) => (r.detail?.['groups'] ?? []) as Array<{ event: string; count: number }>)
        .filter((gr) => gr.event === 'tls.reject')
        .reduce((n, gr) => n + gr.count, 0);
    const until = Date.now() + 25_000;
    while (suppressedSoFar() + written.length < 2000 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    const suppressed = suppressedSoFar();
    expect(suppressed + written.length).toBe(2000);
    const metrics = await (await fetch(`${metricsBase}/metrics`)).text();
    const counted = [...metrics.matchAll(/^gatehouse_audit_suppressed_records_total\{event="tls\.reject",kind="[a-z_]+"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(counted).toBeGreaterThanOrEqual(suppressed);
  }, 90_000);
});

describe("one certificate's refusals on the gateway's own pages", () => {
  it('300 sign-in page requests with a next for another site: at most the per-certificate budget recorded, the rest counted', async () => {
    const mark = auditMark(g);
    const suppressedMetric = async () => {
      const metrics = await (await fetch(`${metricsBase}/metrics`)).text();
      return [...metrics.matchAll(/^gatehouse_audit_suppressed_records_total\{event="session\.start",kind="[^"]+"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const before = await suppressedMetric();
    // Paced to stay within the request rate (100/s after a burst of 200): every request is a 400 refusal.
    let refused = 0;
    for (let round = 0; round < 6; round++) {
      const requests = Array.from({ length: 50 }, (_, i) => `GET /.well-known/gatehouse/?next=${encodeURIComponent(`https://evil.example/${round}-${i}`)} HTTP/1.1\r\nHost: localhost\r\n\r\n`).join('');
      const x = await g.send(`${requests}GET /.well-known/gatehouse/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, { as: 'admin', expectResponses: 51, timeoutMs: 20_000 });
      refused += x.finals.filter((r) => r.status === 400).length;
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(refused).toBe(300);
    const fingerprint = g.certs.admin.fingerprint;
    const recorded = () => g.h.audit().slice(mark).filter((r) => r.event === 'session.start' && r.decision === 'deny' && r.client?.fingerprint === fingerprint).length;
    // The per-certificate budget is 200 per 10 s window; these requests may straddle two windows.
    expect(recorded()).toBeLessThan(300);
    const until = Date.now() + 5000;
    while ((await suppressedMetric()) - before + recorded() < refused && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect((await suppressedMetric()) - before + recorded()).toBe(refused);
    await expectStillServes(g);
  }, 60_000);
});
