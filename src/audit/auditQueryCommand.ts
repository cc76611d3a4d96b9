// Runs `gatehouse audit query`: turns the command's options into a filter, streams the files
// (.gz too) record by record and writes a table, JSON lines, a summary or the loans, minding backpressure.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { orderAuditFiles } from './auditFileOrder.ts';
import { linesOfFiles } from './auditLines.ts';
import { matchesFilter, parseQueryTime, type AuditFilter } from './auditQuery.ts';
import type { WrittenAuditRecord } from './auditRecord.ts';
import { AuditSummary, formatSummary } from './auditSummary.ts';
import { DelegationSummary, formatDelegations } from './auditDelegations.ts';
import { displaySafe } from '../text/displayText.ts';
import { QUERY_FORMATS as FORMATS, type QueryFormat as Format } from './queryFormats.ts';

export type QueryResult = { ok: true; matched: number; skipped: number } | { ok: false; message: string };

const LIST_OPTIONS = ['user', 'cn', 'fingerprint', 'route', 'decision', 'status', 'source', 'event', 'delegatedBy', 'publisher', 'idpSubject', 'relay'] as const;

export function filterFromOptions(opts: Record<string, unknown>, now = Date.now()): { ok: true; filter: AuditFilter } | { ok: false; message: string } {
  const filter: AuditFilter = {};
  for (const key of LIST_OPTIONS) {
    const v = opts[key];
    if (Array.isArray(v)) filter[key] = v.map(String);
  }
  for (const key of ['since', 'until'] as const) {
    const v = opts[key];
    if (typeof v !== 'string') continue;
    const t = parseQueryTime(v, now);
    if (!t.ok) return { ok: false, message: `--${key}: ${t.message}` };
    filter[key] = t.ms;
  }
  return { ok: true, filter };
}

function cell(value: string | number | undefined, width: number): string {
  // Escaped before it is cut and padded: a record's text must not move the cursor or start a row.
  const s = value === undefined ? '-' : displaySafe(String(value));
  return (s.length > width ? s.slice(0, width - 1) + '…' : s).padEnd(width);
}

const TABLE_HEAD = `${cell('time', 24)} ${cell('event', 16)} ${cell('user', 12)} ${cell('cn', 12)} ${cell('source', 21)} ${cell('route', 14)} ${cell('request', 28)} ${cell('decision', 8)} ${cell('status', 6)} ${cell('in/out bytes', 15)} reason`;

function tableRow(r: WrittenAuditRecord): string {
  const request = r.method ? `${r.method} ${r.path ?? r.target ?? ''}` : undefined;
  const bytes = r.bytesIn === undefined && r.bytesOut === undefined ? undefined : `${r.bytesIn ?? 0}/${r.bytesOut ?? 0}`;
  return `${cell(r.time, 24)} ${cell(r.event, 16)} ${cell(r.token?.user, 12)} ${cell(r.client?.cn, 12)} ${cell(r.source, 21)} ${cell(r.route, 14)} ${cell(request, 28)} ${cell(r.decision, 8)} ${cell(r.status, 6)} ${cell(bytes, 15)} ${displaySafe(r.reason ?? '')}`.trimEnd();
}

export async function runAuditQuery(files: readonly string[], opts: Record<string, unknown>, out: Writable): Promise<QueryResult> {
  const format = (opts.format ?? 'table') as Format;
  if (!FORMATS.includes(format)) return { ok: false, message: `--format: expected one of ${FORMATS.join(', ')}` };
  const parsed = filterFromOptions(opts);
  if (!parsed.ok) return parsed;
  const summary = format === 'summary' ? new AuditSummary() : format === 'delegations' ? new DelegationSummary() : undefined;
  let matched = 0;
  let skipped = 0;
  const emit = async (text: string) => {
    if (!out.write(text)) await once(out, 'drain');
  };
  try {
    if (format === 'table') await emit(TABLE_HEAD.trimEnd() + '\n');
    // Oldest file first, whatever order a shell glob gave (`audit.log*` lists the live file first).
    for await (const l of linesOfFiles(await orderAuditFiles(files))) {
      let r: WrittenAuditRecord;
      try {
        r = JSON.parse(l.bytes.toString('utf8')) as WrittenAuditRecord;
      } catch {
        skipped += 1;
        continue;
      }
      if (!matchesFilter(r, parsed.filter)) continue;
      matched += 1;
      if (summary) summary.add(r);
      else await emit(format === 'json' ? l.bytes.toString('utf8') + '\n' : tableRow(r) + '\n');
    }
  } catch (err) {
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  if (summary instanceof AuditSummary) await emit(formatSummary(summary.sorted()));
  else if (summary) await emit(formatDelegations(summary.sorted()));
  return { ok: true, matched, skipped };
}
