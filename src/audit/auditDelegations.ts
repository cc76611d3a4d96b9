// Delegation in the audit log: which loan (a token block binding another certificate than the
// authority block does) a record was made under, and the `--format delegations` view of the loans.
import type { AuditTokenBlock, WrittenAuditRecord } from './auditRecord.ts';
import { textColumns } from '../text/displayText.ts';

export interface Loan {
  /** The token's user: who lent. */
  lender: string;
  /** The first block after the authority block that binds a certificate the authority block does not. */
  block: AuditTokenBlock;
}

function sameBinding(a: AuditTokenBlock['boundTo'], b: AuditTokenBlock['boundTo']): boolean {
  if (a === undefined || b === undefined) return false;
  if (a.fingerprint !== undefined && b.fingerprint !== undefined) return a.fingerprint.toLowerCase() === b.fingerprint.toLowerCase();
  return a.cn !== undefined && a.cn === b.cn;
}

/** The loan a record was made under, or undefined for a token used by (or bound to) its own holder. */
export function loanOf(r: WrittenAuditRecord): Loan | undefined {
  const blocks = r.token?.blocks;
  if (blocks === undefined || blocks.length < 2) return undefined;
  const authority = blocks[0]?.boundTo;
  const block = blocks.slice(1).find((b) => b.boundTo !== undefined && !sameBinding(b.boundTo, authority));
  return block && { lender: r.token?.user ?? '-', block };
}

export interface LoanRow {
  lender: string;
  block: AuditTokenBlock;
  /** The borrower's CN, learned from a record whose client certificate is the one the loan binds. */
  borrowerCn?: string;
  first: string;
  last: string;
  /** HTTP requests and tunnel attempts. */
  requests: number;
  allowed: number;
  denied: number;
  bytesIn: number;
  bytesOut: number;
  tunnels: number;
  routes: Set<string>;
  /** CNs of other certificates that presented the borrowed token (refused unless the binding allows them). */
  others: Set<string>;
}

const MAX_OTHERS = 8;

/** Loans by lender and block revocation id. Memory grows with the number of loans, not of records. */
export class DelegationSummary {
  private readonly rows = new Map<string, LoanRow>();

  add(r: WrittenAuditRecord): void {
    if (r.event !== 'request' && r.event !== 'tunnel.open' && r.event !== 'tunnel.close') return;
    const loan = loanOf(r);
    if (loan === undefined) return;
    const key = `${loan.lender}\u0000${loan.block.revocationId}`;
    let row = this.rows.get(key);
    if (!row) {
      row = { lender: loan.lender, block: loan.block, first: r.time, last: r.time, requests: 0, allowed: 0, denied: 0, bytesIn: 0, bytesOut: 0, tunnels: 0, routes: new Set(), others: new Set() };
      this.rows.set(key, row);
    }
    if (r.time < row.first) row.first = r.time;
    if (r.time > row.last) row.last = r.time;
    const bound = loan.block.boundTo;
    const borrower = r.client !== undefined && (bound?.fingerprint !== undefined ? r.client.fingerprint?.toLowerCase() === bound.fingerprint.toLowerCase() : r.client.cn === bound?.cn);
    if (borrower) row.borrowerCn ??= r.client?.cn;
    else if (r.client && row.others.size < MAX_OTHERS) row.others.add(r.client.cn);
    if (r.route !== undefined) row.routes.add(r.route);
    if (r.event === 'tunnel.close') row.tunnels += 1;
    else {
      row.requests += 1;
      if (r.decision === 'deny') row.denied += 1;
      else if (r.decision === 'allow') row.allowed += 1;
    }
    row.bytesIn += r.bytesIn ?? 0;
    row.bytesOut += r.bytesOut ?? 0;
  }

  sorted(): LoanRow[] {
    return [...this.rows.values()].sort((a, b) => a.lender.localeCompare(b.lender) || a.first.localeCompare(b.first));
  }
}

function short(fingerprint: string): string {
  return fingerprint.length > 23 ? `${fingerprint.slice(0, 15)}…${fingerprint.slice(-4)}` : fingerprint;
}

function borrowerOf(row: LoanRow): string {
  const bound = row.block.boundTo ?? {};
  const cn = bound.cn ?? row.borrowerCn;
  if (bound.fingerprint === undefined) return `cn:${cn ?? '?'}`;
  return cn === undefined ? short(bound.fingerprint) : `${cn} (${short(bound.fingerprint)})`;
}

/** How the loan block was made: signed with the lender's delegation key, by another signer, or appended. */
function madeBy(block: AuditTokenBlock): string {
  if (block.delegation) return 'delegation key';
  return block.role === 'third-party' ? `signed by ${block.signer ?? '?'}` : 'attenuation';
}

export function formatDelegations(rows: LoanRow[]): string {
  const head = ['lender', 'borrower', 'block', 'loan block id', 'first use', 'last use', 'requests', 'allowed', 'denied', 'bytes in', 'bytes out', 'tunnels', 'routes', 'also presented by'];
  const table = rows.map((r) => [
    r.lender,
    borrowerOf(r),
    `${r.block.index} (${madeBy(r.block)})`,
    `${r.block.revocationId.slice(0, 16)}…`,
    r.first,
    r.last,
    String(r.requests),
    String(r.allowed),
    String(r.denied),
    String(r.bytesIn),
    String(r.bytesOut),
    String(r.tunnels),
    [...r.routes].sort().join(','),
    r.others.size === 0 ? '-' : [...r.others].sort().join(','),
  ]);
  return textColumns(head, table) + '\n';
}
