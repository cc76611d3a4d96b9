// Every audit record has a bounded size (audit.maxRecordBytes): long values are cut with a marker that
// says how many bytes were cut and the SHA-256 of the whole value, so the record still identifies them.
import { cutText } from '../text/cutText.ts';
import type { AuditRecord } from './auditRecord.ts';

export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024;

/**
 * What the chain adds in front of a record's own fields: `{"seq":…,"prev":"sha256:<64 hex>","time":"<ISO>",`
 * is at most ~140 bytes (a 16-digit seq); the rest is margin.
 */
const CHAIN_FIELDS_BYTES = 192;

/** The top-level fields given up, in this order, when cutting long values is not enough (most detail first, identity last). */
const DROP_ORDER = ['detail', 'token', 'target', 'upstream', 'publisher', 'client', 'path', 'reason', 'route', 'method'] as const;

/** A copy of `value` with every string longer than `keepChars` cut; nesting past `depth` is replaced by a marker. */
function cutStrings(value: unknown, keepChars: number, depth: number): unknown {
  if (typeof value === 'string') return cutText(value, keepChars);
  if (typeof value !== 'object' || value === null) return value;
  if (depth <= 0) return '…[cut: nested too deep]';
  if (Array.isArray(value)) return value.map((item) => cutStrings(item, keepChars, depth - 1));
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) copy[cutText(key, keepChars)] = cutStrings(item, keepChars, depth - 1);
  return copy;
}

/**
 * The record as it fits in `budget` bytes of JSON, deterministically: first every string longer than
 * a quarter, then a sixteenth of the budget is cut, then 128 characters; if still too long, top-level
 * fields are dropped in DROP_ORDER. `cut` says how long the record's fields were and which fields went.
 */
function shrink(record: AuditRecord, budget: number, originalBytes: number): string {
  for (const keep of [budget >> 2, budget >> 4, 128]) {
    const bounded: AuditRecord = { ...(cutStrings(record, keep, 8) as AuditRecord), cut: { bytes: originalBytes } };
    let json = JSON.stringify(bounded);
    if (Buffer.byteLength(json) <= budget) return json;
    if (keep !== 128) continue;
    const dropped: string[] = [];
    for (const field of DROP_ORDER) {
      if (!(field in bounded)) continue;
      delete bounded[field];
      dropped.push(field);
      bounded.cut = { bytes: originalBytes, dropped };
      json = JSON.stringify(bounded);
      if (Buffer.byteLength(json) <= budget) return json;
    }
    // Only fixed-size fields remain, each string at most 128 characters: far below the 4 KiB minimum.
    return json;
  }
  throw new Error('unreachable');
}

/**
 * The JSON of `record`'s own fields (what the chain prefixes with seq, prev and time), at most
 * `maxRecordBytes` bytes once chained. The only place records are bounded: every record passes here.
 */
export function boundedRecordJson(record: AuditRecord, maxRecordBytes: number): string {
  const json = JSON.stringify(record);
  const budget = maxRecordBytes - CHAIN_FIELDS_BYTES;
  // Hot path: a UTF-16 unit is at most 3 UTF-8 bytes, so nearly every record is known to fit without
  // counting its bytes; only a long one is measured, and only one over the budget is rebuilt.
  if (json.length * 3 <= budget) return json;
  const bytes = Buffer.byteLength(json);
  if (bytes <= budget) return json;
  return shrink(record, budget, bytes);
}
