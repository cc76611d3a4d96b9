// The audit record size bound: long values cut with their size and hash, fields dropped in a fixed order
// when that is not enough, and the writer holding every line it chains to audit.maxRecordBytes.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { openAuditLog } from '../src/audit/auditLog.ts';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { boundedRecordJson } from '../src/audit/recordBound.ts';
import { cutText } from '../src/text/cutText.ts';
import { runGatehouse } from './support/gatewayHarness.ts';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

it('cuts a long value to its start, the UTF-8 bytes cut and the hash of the whole, never inside a surrogate pair', () => {
  expect(cutText('short', 10)).toBe('short');
  const long = 'a'.repeat(5000);
  expect(cutText(long, 100)).toBe(`${'a'.repeat(100)}…[cut 4900 bytes sha256:${sha256(long)}]`);
  const emoji = `${'b'.repeat(99)}😀${'é'.repeat(1000)}`;
  const cut = cutText(emoji, 100);
  expect(cut.startsWith(`${'b'.repeat(99)}…[cut ${Buffer.byteLength(emoji) - 99} bytes sha256:${sha256(emoji)}]`)).toBe(true);
});

it('leaves a record that fits exactly as JSON.stringify writes it', () => {
  const record: AuditRecord = { event: 'request', conn: 'c1', path: '/x/é', decision: 'allow', status: 200 };
  expect(boundedRecordJson(record, 16_384)).toBe(JSON.stringify(record));
});

it('cuts the long values of a record over the cap and says how long it was', () => {
  const path = `/web/${'p'.repeat(40_000)}`;
  const json = boundedRecordJson({ event: 'request', conn: 'c1', req: 'c1.1', path, reason: 'r'.repeat(9000), decision: 'deny', status: 403 }, 16_384);
  expect(Buffer.byteLength(json)).toBeLessThanOrEqual(16_384);
  const bounded = JSON.parse(json) as AuditRecord;
  expect(bounded.path).toMatch(new RegExp(`^/web/p+…\\[cut \\d+ bytes sha256:${sha256(path)}\\]$`));
  expect(bounded).toMatchObject({ event: 'request', conn: 'c1', req: 'c1.1', decision: 'deny', status: 403, cut: { bytes: Buffer.byteLength(JSON.stringify({ event: 'request', conn: 'c1', req: 'c1.1', path, reason: 'r'.repeat(9000), decision: 'deny', status: 403 })) } });
  expect(bounded.cut?.dropped).toBeUndefined();
});

it('drops whole fields in a fixed order when cutting values is not enough, the same way every time', () => {
  // Thousands of short values: none is long, together they are.
  const detail = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`k${i}`, 'v'.repeat(100)]));
  const record: AuditRecord = { event: 'connection.reject', source: '127.0.0.1:1', decision: 'deny', reason: 'too many', detail };
  const json = boundedRecordJson(record, 4096);
  expect(Buffer.byteLength(json)).toBeLessThanOrEqual(4096);
  expect(boundedRecordJson(record, 4096)).toBe(json);
  const bounded = JSON.parse(json) as AuditRecord;
  expect(bounded).toMatchObject({ event: 'connection.reject', source: '127.0.0.1:1', decision: 'deny', reason: 'too many', cut: { dropped: ['detail'] } });
  expect(bounded.detail).toBeUndefined();
});

it('the writer holds every chained line to maxRecordBytes, whichever stage wrote the record, and the chain verifies', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bound-'));
  const file = join(dir, 'audit.log');
  const log = openAuditLog({ file, maxRecordBytes: 4096 });
  const huge = 'h'.repeat(100_000);
  const records: AuditRecord[] = [
    { event: 'tls.reject', source: '127.0.0.1:1', decision: 'deny', reason: huge },
    { event: 'request', client: { cn: huge, subject: huge, issuer: huge, serial: '01', fingerprint: 'sha256:00' }, token: { user: 'alice', groups: Array.from({ length: 500 }, (_, i) => `group-${i}-${'g'.repeat(40)}`) }, path: huge, target: huge, decision: 'allow', status: 200 },
    { event: 'tunnel.close', route: huge, upstream: huge, detail: { transport: 'connect', nested: { deeper: [huge, { again: huge }] } } },
    { event: 'config.reload', decision: 'deny', reason: '✓'.repeat(50_000) },
  ];
  for (const record of records) log.write(record);
  await log.close();
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  expect(lines.length).toBeGreaterThanOrEqual(records.length);
  for (const line of lines) expect(Buffer.byteLength(line)).toBeLessThanOrEqual(4096);
  expect(lines.map((l) => (JSON.parse(l) as AuditRecord).event)).toEqual(expect.arrayContaining(records.map((r) => r.event)));
  const verify = await runGatehouse(['audit', 'verify', '--unsigned', file]);
  expect(verify.code, verify.stdout + verify.stderr).toBe(0);
});
