// `gatehouse audit query` on a chained log spanning two weeks (one rotation gzipped): the questions a
// security team asks — what one certificate did last week, every denial on a route and why, bytes
// tunnelled per user — plus the status, source, event and time filters and the JSON output.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { GENESIS_HASH, lineHash } from '../src/audit/auditChain.ts';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { runCli } from './support/auditFixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-audit-query-'));
const DAY = 86_400_000;
const now = Date.now();
const alice = { cn: 'alice', subject: 'CN=alice', issuer: 'CN=dev CA', serial: '01', fingerprint: 'sha256:aa' };
const bob = { cn: 'bob', subject: 'CN=bob', issuer: 'CN=dev CA', serial: '02', fingerprint: 'sha256:bb' };
const carol = { cn: 'carol', subject: 'CN=carol', issuer: 'CN=dev CA', serial: '03', fingerprint: 'sha256:cc' };

/** Records `daysAgo` old, chained exactly as the gateway writes them. */
const records: Array<[number, AuditRecord]> = [
  [10, { event: 'request', client: alice, token: { user: 'alice' }, route: 'notebook', method: 'GET', path: '/old', decision: 'allow', status: 200, bytesIn: 0, bytesOut: 10 }],
  [3, { event: 'request', client: alice, token: { user: 'alice' }, route: 'notebook', method: 'GET', path: '/a', decision: 'allow', status: 200, source: '203.0.113.7:5000', bytesIn: 5, bytesOut: 100 }],
  [3, { event: 'request', client: bob, token: { user: 'alice' }, route: 'notebook', method: 'POST', path: '/b', decision: 'deny', status: 403, source: '198.51.100.2:6000', reason: 'check failed: check if method("GET")' }],
  [2, { event: 'request', client: bob, route: 'notebook', method: 'GET', path: '/c', decision: 'deny', status: 401, source: '198.51.100.2:6001', reason: 'no token' }],
  [2, { event: 'tunnel.open', client: alice, token: { user: 'alice' }, route: 'db', protocol: 'tcp', decision: 'allow' }],
  [2, { event: 'tunnel.close', client: alice, token: { user: 'alice' }, route: 'db', protocol: 'tcp', bytesIn: 1000, bytesOut: 5_000_000, durationMs: 90_000 }],
  [1, { event: 'tunnel.open', client: bob, token: { user: 'bob' }, route: 'db', protocol: 'tcp', decision: 'allow' }],
  [1, { event: 'tunnel.close', client: bob, token: { user: 'bob' }, route: 'db', protocol: 'tcp', bytesIn: 2048, bytesOut: 4096, durationMs: 30_000 }],
  [0, { event: 'request', client: alice, token: { user: 'alice' }, route: 'notebook', method: 'GET', path: '/z', decision: 'deny', status: 503, reason: 'audit log unavailable' }],
  // carol publishes her notebook twice (connections p1 and p2); a request finds nobody publishing it.
  [0, { event: 'publish.open', client: carol, token: { user: 'carol' }, decision: 'allow', publisher: 'p1' }],
  [0, { event: 'request', client: carol, token: { user: 'carol' }, route: 'published', method: 'GET', path: '/~carol/nb/1', decision: 'allow', status: 200, publisher: 'p1' }],
  [0, { event: 'publish.close', client: carol, token: { user: 'carol' }, publisher: 'p1', reason: 'publisher lost (ping timeout)' }],
  [0, { event: 'request', client: carol, token: { user: 'carol' }, route: 'published', method: 'GET', path: '/~carol/nb/2', decision: 'deny', status: 503, reason: 'published:carol/nb: nobody publishes it' }],
  // A 503 that names no published target stays a denial.
  [0, { event: 'request', client: { ...carol, cn: 'dave', fingerprint: 'sha256:dd' }, token: { user: 'dave' }, route: 'published', method: 'GET', path: '/~carol/nb/3', decision: 'deny', status: 503, reason: 'audit log unavailable' }],
  [0, { event: 'publish.open', client: carol, token: { user: 'carol' }, decision: 'allow', publisher: 'p2' }],
  [0, { event: 'tunnel.open', client: carol, token: { user: 'carol' }, route: 'published', protocol: 'tcp', decision: 'allow', publisher: 'p2' }],
];

beforeAll(() => {
  let prev = GENESIS_HASH;
  const lines = records.map(([daysAgo, r], i) => {
    const line = JSON.stringify({ seq: i + 1, prev, time: new Date(now - daysAgo * DAY).toISOString(), ...r });
    prev = lineHash(line);
    return line + '\n';
  });
  writeFileSync(join(dir, 'audit.log.1.gz'), gzipSync(lines.slice(0, 4).join('')));
  writeFileSync(join(dir, 'audit.log'), lines.slice(4).join(''));
});

const files = () => [join(dir, 'audit.log.1.gz'), join(dir, 'audit.log')];

async function query(args: string[]): Promise<string> {
  const result = await runCli(['audit', 'query', ...args, ...files()]);
  expect(result.stderr).not.toMatch(/gatehouse:/);
  expect(result.code).toBe(0);
  return result.stdout;
}

const paths = (jsonLines: string) => jsonLines.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as AuditRecord).path ?? (JSON.parse(l) as AuditRecord).event);

describe('audit query', () => {
  it('everything one certificate did last week (by fingerprint), across a .gz rotation', async () => {
    expect(paths(await query(['--fingerprint', 'sha256:aa', '--since', '7d', '--format', 'json']))).toEqual(['/a', 'tunnel.open', 'tunnel.close', '/z']);
    expect(paths(await query(['--cn', 'bob', '--format', 'json']))).toEqual(['/b', '/c', 'tunnel.open', 'tunnel.close']);
  });

  it('every denial on a route, with its reason, as a table', async () => {
    const table = (await query(['--route', 'notebook', '--decision', 'deny'])).trimEnd().split('\n');
    expect(table[0]).toMatch(/^time\s+event\s+user\s+cn\s+source\s+route\s+request\s+decision\s+status/);
    expect(table).toHaveLength(4);
    expect(table[1]).toMatch(/request\s+alice\s+bob\s+198\.51\.100\.2:6000\s+notebook\s+POST \/b\s+deny\s+403.*check failed: check if method\("GET"\)$/);
    expect(table[2]).toMatch(/deny\s+401.*no token$/);
    expect(table[3]).toMatch(/deny\s+503.*audit log unavailable$/);
  });

  it('bytes tunnelled and tunnel time per user, as a summary', async () => {
    const summary = await query(['--event', 'tunnel.*', '--format', 'summary']);
    expect(summary).toMatch(/^user\s+route\s+requests\s+allowed\s+denied\s+not published\s+bytes in\s+bytes out\s+tunnels\s+tunnel time/);
    expect(summary).toMatch(/\nalice\s+db\s+1\s+1\s+0\s+0\s+1000 B\s+4\.8 MiB\s+1\s+1m30s\n/);
    expect(summary).toMatch(/\nbob\s+db\s+1\s+1\s+0\s+0\s+2\.0 KiB\s+4\.0 KiB\s+1\s+30s\n/);
  });

  it('summarizes denials by reason per user and route', async () => {
    const summary = await query(['--route', 'notebook', '--format', 'summary']);
    expect(summary).toMatch(/\nalice\s+notebook\s+4\s+2\s+2\s/);
    expect(summary).toMatch(/denials alice notebook:\n\s+1\s+check failed: check if method\("GET"\)\n\s+1\s+audit log unavailable/);
    expect(summary).toMatch(/\ncn:bob\s+notebook\s+1\s+0\s+1\s/);
  });

  it('filters by status class, source address and time window', async () => {
    expect(paths(await query(['--status', '4xx', '--format', 'json']))).toEqual(['/b', '/c']);
    expect(paths(await query(['--source', '198.51.100.2', '--format', 'json']))).toEqual(['/b', '/c']);
    const since = new Date(now - 2.5 * DAY).toISOString();
    const until = new Date(now - 1.5 * DAY).toISOString();
    expect(paths(await query(['--since', since, '--until', until, '--format', 'json']))).toEqual(['/c', 'tunnel.open', 'tunnel.close']);
  });

  it('follows one publisher connection (--publisher): the requests and tunnels through it, its publish.open and close', async () => {
    expect(paths(await query(['--publisher', 'p1', '--format', 'json']))).toEqual(['publish.open', '/~carol/nb/1', 'publish.close']);
    expect(paths(await query(['--publisher', 'p2', '--publisher', 'p1', '--event', 'tunnel.*', '--format', 'json']))).toEqual(['tunnel.open']);
  });

  it('tells "not published" (503, nobody publishes it) apart from denials in the summary', async () => {
    const summary = await query(['--route', 'published', '--format', 'summary']);
    expect(summary).toMatch(/\ncarol\s+published\s+3\s+2\s+0\s+1\s/);
    expect(summary).toMatch(/\ndave\s+published\s+1\s+0\s+1\s+0\s/);
    expect(summary).toMatch(/\nnot published carol published:\n\s+1\s+published:carol\/nb: nobody publishes it/);
    expect(summary).not.toMatch(/denials carol/);
  });

  it('refuses a malformed time or format', async () => {
    const bad = await runCli(['audit', 'query', '--since', 'yesterday-ish', ...files()]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--since: not a time');
    const format = await runCli(['audit', 'query', '--format', 'xml', ...files()]);
    expect(format.code).toBe(2);
  });
});
