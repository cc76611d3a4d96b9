// The audit line as written: the chained fields and the record, byte for byte what serializing
// `{ seq, prev, time, ...record }` gives, so the hash chain and `audit verify` read it unchanged.
import { describe, expect, it } from 'vitest';
import { chainedLine } from '../src/audit/auditLog.ts';
import type { AuditRecord } from '../src/audit/auditRecord.ts';

const records: AuditRecord[] = [
  { event: 'request', conn: 'c1', req: 'c1.1', source: '127.0.0.1:5000', protocol: 'http', method: 'GET', path: '/a "quoted" \u2028 path', decision: 'allow', status: 200, bytesIn: 0, bytesOut: 12, durationMs: 1.25 },
  { event: 'connection.close', conn: 'c1', reason: undefined, detail: { requests: 3, nested: { list: [1, 'two', null] } } },
  { event: 'gateway.stop' },
  {} as AuditRecord,
];

describe('chainedLine', () => {
  it('writes exactly what JSON.stringify of the chained record writes', () => {
    for (const record of records) {
      for (const prev of ['sha256:' + '0'.repeat(64), 'odd "head"\n\\ from a head file']) {
        const time = new Date(0).toISOString();
        expect(chainedLine(7, prev, time, record)).toBe(JSON.stringify({ seq: 7, prev, time, ...record }));
      }
    }
  });
});
