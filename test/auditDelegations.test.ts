// What counts as a loan in the audit log (auditDelegations.ts), over hand-written records: a later
// block binding another certificate than the authority block; narrowing within one binding is not.
import { describe, expect, it } from 'vitest';
import { DelegationSummary, formatDelegations, loanOf } from '../src/audit/auditDelegations.ts';
import type { AuditTokenBlock, WrittenAuditRecord } from '../src/audit/auditRecord.ts';

const alice = `sha256:${'a'.repeat(64)}`;
const bob = `sha256:${'b'.repeat(64)}`;

function record(blocks: AuditTokenBlock[] | undefined, extra: Partial<WrittenAuditRecord> = {}): WrittenAuditRecord {
  return {
    seq: 1, prev: 'sha256:0', time: '2026-11-29T10:00:00.000Z', event: 'request', decision: 'allow', route: 'notebook',
    client: { cn: 'bob', subject: 'CN=bob', issuer: 'CN=ca', serial: '01', fingerprint: bob },
    token: { user: 'alice', revocationIds: (blocks ?? [{ revocationId: '00' }]).map((b) => b.revocationId), ...(blocks && { blocks }) },
    ...extra,
  };
}

const authority = (boundTo?: AuditTokenBlock['boundTo']): AuditTokenBlock => ({ index: 0, role: 'authority', revocationId: '00', ...(boundTo && { boundTo }) });

describe('loanOf', () => {
  it('finds the delegation block that binds bob in a token bound to alice', () => {
    const loan: AuditTokenBlock = { index: 1, role: 'third-party', revocationId: '11', signer: 'ed25519/cc', delegation: true, boundTo: { fingerprint: bob } };
    expect(loanOf(record([authority({ fingerprint: alice }), loan]))).toEqual({ lender: 'alice', block: loan });
  });

  it('counts an unbound token attenuated to one certificate as a loan, and compares CNs when no fingerprint is bound', () => {
    const toBob: AuditTokenBlock = { index: 1, role: 'attenuation', revocationId: '11', boundTo: { cn: 'bob' } };
    expect(loanOf(record([authority(), toBob]))?.block).toBe(toBob);
    expect(loanOf(record([authority({ cn: 'alice' }), toBob]))?.block).toBe(toBob);
    expect(loanOf(record([authority({ cn: 'bob' }), toBob]))).toBeUndefined();
  });

  it('is not a loan: one block, narrowing within the same binding, an attestation binding no one', () => {
    expect(loanOf(record(undefined))).toBeUndefined();
    expect(loanOf(record([authority({ fingerprint: alice }), { index: 1, role: 'attenuation', revocationId: '11', boundTo: { fingerprint: alice.toUpperCase() } }]))).toBeUndefined();
    expect(loanOf(record([authority({ fingerprint: alice }), { index: 1, role: 'third-party', revocationId: '11', signer: 'facility' }]))).toBeUndefined();
  });

  it('takes the first loan block: a borrower re-binding to someone else does not start a loan of his own', () => {
    const toBob: AuditTokenBlock = { index: 1, role: 'third-party', revocationId: '11', delegation: true, boundTo: { fingerprint: bob } };
    const toCarol: AuditTokenBlock = { index: 2, role: 'attenuation', revocationId: '22', boundTo: { cn: 'carol' } };
    expect(loanOf(record([authority({ fingerprint: alice }), toBob, toCarol]))?.block).toBe(toBob);
  });
});

describe('DelegationSummary', () => {
  it('sums one loan across requests and tunnels, learns the borrower CN, and names other presenters', () => {
    const blocks: AuditTokenBlock[] = [authority({ fingerprint: alice }), { index: 1, role: 'third-party', revocationId: 'ab'.repeat(32), delegation: true, boundTo: { fingerprint: bob } }];
    const summary = new DelegationSummary();
    summary.add(record(blocks, { time: '2026-11-29T10:00:02.000Z', bytesOut: 100 }));
    summary.add(record(blocks, { time: '2026-11-29T10:00:01.000Z', decision: 'deny', status: 403, client: { cn: 'carol', subject: '', issuer: '', serial: '', fingerprint: `sha256:${'c'.repeat(64)}` } }));
    summary.add(record(blocks, { time: '2026-11-29T10:00:03.000Z', event: 'tunnel.open', route: 'raw' }));
    summary.add(record(blocks, { time: '2026-11-29T10:00:04.000Z', event: 'tunnel.close', route: 'raw', bytesIn: 7, bytesOut: 9 }));
    summary.add(record(undefined, { time: '2026-11-29T10:00:05.000Z', bytesOut: 1000 }));
    const rows = summary.sorted();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ lender: 'alice', borrowerCn: 'bob', first: '2026-11-29T10:00:01.000Z', last: '2026-11-29T10:00:04.000Z', requests: 3, allowed: 2, denied: 1, bytesIn: 7, bytesOut: 109, tunnels: 1 });
    const [, line] = formatDelegations(rows).trimEnd().split('\n');
    expect(line?.split(/ {2,}/)).toEqual(['alice', 'bob (sha256:bbbbbbbb…bbbb)', '1 (delegation key)', `${'ab'.repeat(8)}…`, '2026-11-29T10:00:01.000Z', '2026-11-29T10:00:04.000Z', '3', '2', '1', '7', '109', '1', 'notebook,raw', 'carol']);
  });
});
