// The filters of `gatehouse audit query`: what a security team asks of the log (who, with which
// certificate, which route, what decision, when), as a pure predicate over one parsed record.
import { loanOf } from './auditDelegations.ts';
import type { WrittenAuditRecord } from './auditRecord.ts';

export interface AuditFilter {
  user?: string[];
  cn?: string[];
  fingerprint?: string[];
  route?: string[];
  decision?: string[];
  status?: string[];
  source?: string[];
  event?: string[];
  /** Lenders: records made under a token their user lent to another certificate (auditDelegations.ts). */
  delegatedBy?: string[];
  /** Publisher connections (`conn` ids): requests and tunnels through them, and their publish.open/close. */
  publisher?: string[];
  /** IdP subjects: the token.issue records of their logins and every record made with those tokens, loans included. */
  idpSubject?: string[];
  /** Correlation ids of requests and tunnels relayed between cluster instances: the entry's and the carrier's records. */
  relay?: string[];
  /** Milliseconds since the epoch, inclusive. */
  since?: number;
  /** Milliseconds since the epoch, inclusive. */
  until?: number;
}

export type TimeParse = { ok: true; ms: number } | { ok: false; message: string };

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** ISO 8601 (or anything Date.parse takes), or a duration back from `now`: 90s, 30m, 24h, 7d, 2w. */
export function parseQueryTime(text: string, now = Date.now()): TimeParse {
  const relative = /^(\d+)([smhdw])$/.exec(text.trim());
  if (relative) return { ok: true, ms: now - Number(relative[1]) * (UNIT_MS[relative[2] ?? 's'] ?? 1000) };
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? { ok: false, message: `not a time: ${JSON.stringify(text)} (use ISO 8601 like 2026-11-29T10:00:00Z, or 30m, 24h, 7d)` } : { ok: true, ms };
}

/** `203.0.113.7:51234` or `[::1]:51234` -> the address alone. */
function sourceIp(source: string): string {
  if (source.startsWith('[')) return source.slice(1, source.indexOf(']'));
  const colon = source.lastIndexOf(':');
  return colon > 0 && source.indexOf(':') === colon ? source.slice(0, colon) : source;
}

function statusMatches(status: number | undefined, wanted: string): boolean {
  if (status === undefined) return false;
  const klass = /^([1-5])xx$/i.exec(wanted);
  return klass ? Math.floor(status / 100) === Number(klass[1]) : String(status) === wanted;
}

function eventMatches(event: string, wanted: string): boolean {
  return wanted.endsWith('*') ? event.startsWith(wanted.slice(0, -1)) : event === wanted;
}

function anyOf(values: string[] | undefined, test: (v: string) => boolean): boolean {
  return values === undefined || values.length === 0 || values.some(test);
}

/** The IdP subject behind a record: its token's (request records), or the login's (token.issue records). */
function idpSubjectOf(r: WrittenAuditRecord): unknown {
  if (r.token?.idp !== undefined) return r.token.idp.subject;
  if (r.event !== 'token.issue') return undefined;
  const idp = r.detail?.idp;
  return typeof idp === 'object' && idp !== null ? (idp as { subject?: unknown }).subject : undefined;
}

export function matchesFilter(r: WrittenAuditRecord, f: AuditFilter): boolean {
  if (f.since !== undefined || f.until !== undefined) {
    const t = Date.parse(r.time);
    if (f.since !== undefined && !(t >= f.since)) return false;
    if (f.until !== undefined && !(t <= f.until)) return false;
  }
  return (
    anyOf(f.event, (v) => eventMatches(r.event, v)) &&
    anyOf(f.user, (v) => r.token?.user === v) &&
    anyOf(f.cn, (v) => r.client?.cn === v) &&
    anyOf(f.fingerprint, (v) => r.client?.fingerprint?.toLowerCase() === v.toLowerCase()) &&
    anyOf(f.route, (v) => r.route === v) &&
    anyOf(f.decision, (v) => r.decision === v) &&
    anyOf(f.status, (v) => statusMatches(r.status, v)) &&
    anyOf(f.source, (v) => r.source !== undefined && (r.source === v || sourceIp(r.source) === v)) &&
    anyOf(f.delegatedBy, (v) => loanOf(r)?.lender === v) &&
    anyOf(f.publisher, (v) => r.publisher === v) &&
    anyOf(f.idpSubject, (v) => idpSubjectOf(r) === v) &&
    anyOf(f.relay, (v) => r.relay?.id === v)
  );
}
