// The `--format summary` view of `gatehouse audit query`: per user and route, requests and tunnels
// allowed and denied, denials by reason, bytes each way and tunnel time. Memory grows with the
// number of distinct (user, route) pairs and reasons, not with the number of records.
import type { WrittenAuditRecord } from './auditRecord.ts';
import { displaySafe, textColumns } from '../text/displayText.ts';

export interface SummaryRow {
  user: string;
  route: string;
  /** HTTP requests and tunnel attempts (a `request` record or a `tunnel.open`). */
  requests: number;
  allowed: number;
  denied: number;
  denials: Map<string, number>;
  /** Refused with 503 because nobody published the service (or its publisher went away): not a denial. */
  notPublished: Map<string, number>;
  bytesIn: number;
  bytesOut: number;
  tunnels: number;
  tunnelMs: number;
}

/** A 503 whose reason names a published target (`published:USER/SERVICE: nobody publishes it`): no publisher, not a policy's no. */
function isNotPublished(r: WrittenAuditRecord): boolean {
  return r.status === 503 && /(^|: )published:[^:\s]+: /.test(r.reason ?? '');
}

function count(reasons: Map<string, number>, reason: string): void {
  const key = reason.slice(0, 120);
  reasons.set(key, (reasons.get(key) ?? 0) + 1);
}

export class AuditSummary {
  private readonly rows = new Map<string, SummaryRow>();

  add(r: WrittenAuditRecord): void {
    if (r.event !== 'request' && r.event !== 'tunnel.open' && r.event !== 'tunnel.close') return;
    const user = r.token?.user ?? (r.client ? `cn:${r.client.cn}` : '-');
    const route = r.route ?? '-';
    const key = `${user}\u0000${route}`;
    let row = this.rows.get(key);
    if (!row) {
      row = { user, route, requests: 0, allowed: 0, denied: 0, denials: new Map(), notPublished: new Map(), bytesIn: 0, bytesOut: 0, tunnels: 0, tunnelMs: 0 };
      this.rows.set(key, row);
    }
    if (r.event === 'tunnel.close') {
      // The close carries the tunnel's bytes and lifetime; its open was counted as the request.
      row.tunnels += 1;
      row.tunnelMs += r.durationMs ?? 0;
    } else {
      row.requests += 1;
      if (r.decision === 'deny' && isNotPublished(r)) count(row.notPublished, r.reason ?? '');
      else if (r.decision === 'deny') {
        row.denied += 1;
        count(row.denials, r.reason ?? `status ${r.status ?? '?'}`);
      } else if (r.decision === 'allow') row.allowed += 1;
    }
    row.bytesIn += r.bytesIn ?? 0;
    row.bytesOut += r.bytesOut ?? 0;
  }

  sorted(): SummaryRow[] {
    return [...this.rows.values()].sort((a, b) => a.user.localeCompare(b.user) || a.route.localeCompare(b.route));
  }
}

const sum = (counts: Map<string, number>) => [...counts.values()].reduce((a, b) => a + b, 0);

function human(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes / 1024;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i += 1) v /= 1024;
  return `${v.toFixed(1)} ${units[i]}`;
}

function duration(ms: number): string {
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)}s`;
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatSummary(rows: SummaryRow[]): string {
  const head = ['user', 'route', 'requests', 'allowed', 'denied', 'not published', 'bytes in', 'bytes out', 'tunnels', 'tunnel time'];
  const table = rows.map((r) => [r.user, r.route, String(r.requests), String(r.allowed), String(r.denied), String(sum(r.notPublished)), human(r.bytesIn), human(r.bytesOut), String(r.tunnels), duration(r.tunnelMs)]);
  const out = [textColumns(head, table)];
  for (const [title, of] of [['denials', (r: SummaryRow) => r.denials], ['not published', (r: SummaryRow) => r.notPublished]] as const) {
    for (const r of rows) {
      const reasons = of(r);
      if (reasons.size === 0) continue;
      out.push('', `${title} ${displaySafe(r.user)} ${displaySafe(r.route)}:`);
      for (const [reason, n] of [...reasons].sort((a, b) => b[1] - a[1])) out.push(`  ${String(n).padStart(6)}  ${displaySafe(reason)}`);
    }
  }
  return out.join('\n') + '\n';
}
