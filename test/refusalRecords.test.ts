// The refusal record budgets: per source address (no certificate), per certificate, and for the whole
// gateway; what is left out is told in the client's next record and summarized in audit.suppressed.
import { afterEach, expect, it, vi } from 'vitest';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { createRefusalRecords, DEFAULT_REFUSAL_BUDGETS } from '../src/audit/refusalRecords.ts';

afterEach(() => vi.useRealTimers());

const reject = (source: string): AuditRecord => ({ event: 'tls.reject', source: `${source}:4000`, decision: 'deny', reason: 'ECONNRESET' });

it('writes ten records per source per window, then counts the rest and reports them in its next record', () => {
  vi.useFakeTimers({ now: 1_000_000 });
  const written: AuditRecord[] = [];
  const records = createRefusalRecords({ write: (r) => written.push(r) });
  for (let i = 0; i < 25; i += 1) records.write(reject('203.0.113.7'), { source: '203.0.113.7', kind: 'handshake' });
  expect(written).toHaveLength(10);
  records.write(reject('198.51.100.1'), { source: '198.51.100.1', kind: 'handshake' });
  expect(written).toHaveLength(11);
  vi.advanceTimersByTime(10_000);
  const summary = written.find((r) => r.event === 'audit.suppressed');
  expect(summary?.detail).toMatchObject({ windowSeconds: 10, suppressed: 15, groups: [{ event: 'tls.reject', kind: 'handshake', count: 15, byClientBudget: 15, sources: 1, identities: 0 }] });
  records.write(reject('203.0.113.7'), { source: '203.0.113.7', kind: 'handshake' });
  expect(written.at(-1)?.detail).toEqual({ suppressedBefore: 15 });
  records.write(reject('203.0.113.7'), { source: '203.0.113.7', kind: 'handshake' });
  expect(written.at(-1)?.detail).toBeUndefined();
  records.close();
});

it('bounds a crowd of addresses by the gateway budget for clients without a certificate, and summarizes it', () => {
  vi.useFakeTimers({ now: 1_000_000 });
  const written: AuditRecord[] = [];
  const records = createRefusalRecords({ write: (r) => written.push(r) });
  for (let i = 0; i < 20_000; i += 1) {
    const ip = `127.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    records.write(reject(ip), { source: ip, kind: 'handshake' });
  }
  expect(written).toHaveLength(DEFAULT_REFUSAL_BUDGETS.anonymous);
  // A client with a certificate still has its own pool.
  records.request({ event: 'request', status: 403, decision: 'deny' }, { source: '127.0.0.1', identity: 'sha256:aa' });
  expect(written).toHaveLength(DEFAULT_REFUSAL_BUDGETS.anonymous + 1);
  records.close();
  const summary = written.at(-1);
  expect(summary?.event).toBe('audit.suppressed');
  expect(summary?.detail).toMatchObject({ suppressed: 19_900, groups: [{ event: 'tls.reject', kind: 'handshake', count: 19_900, byGatewayBudget: 19_900, sources: { atLeast: 10_000 } }] });
});

it('bounds one certificate: 4xx per identity, 429s like an address; a 5xx is always written', () => {
  vi.useFakeTimers({ now: 1_000_000 });
  const written: AuditRecord[] = [];
  const records = createRefusalRecords({ write: (r) => written.push(r) });
  const client = { source: '127.0.0.1', identity: 'sha256:bb' };
  for (let i = 0; i < 500; i += 1) records.request({ event: 'request', status: 403, decision: 'deny' }, client);
  expect(written).toHaveLength(DEFAULT_REFUSAL_BUDGETS.perIdentity);
  for (let i = 0; i < 50; i += 1) records.request({ event: 'request', status: 429, decision: 'deny' }, client);
  expect(written).toHaveLength(DEFAULT_REFUSAL_BUDGETS.perIdentity + DEFAULT_REFUSAL_BUDGETS.perSource);
  for (let i = 0; i < 5; i += 1) records.request({ event: 'request', status: 503, decision: 'deny' }, client);
  expect(written).toHaveLength(DEFAULT_REFUSAL_BUDGETS.perIdentity + DEFAULT_REFUSAL_BUDGETS.perSource + 5);
  records.close();
  expect(written.at(-1)?.detail).toMatchObject({ suppressed: 340, groups: [{ kind: '403', count: 300, identities: 1 }, { kind: '429', count: 40 }] });
});
