// The last MiB of the audit log as parsed records, for the portal's activity views. A view reads what
// was appended since the last one, but never more than the last MiB: its cost is bounded, whatever the log's size.
import { open } from 'node:fs/promises';
import type { AuditRecord } from '../audit/auditRecord.ts';

/** The most a view reads from the file, and about the most record bytes kept between views. */
export const TAIL_WINDOW_BYTES = 1 << 20;

interface Tail {
  ino: number;
  /** Bytes of the file read so far (up to the end of the last whole line). */
  offset: number;
  /** Whether `offset` is at the start of a line (false after skipping to the window of a grown file). */
  aligned: boolean;
  entries: Array<{ bytes: number; record: AuditRecord }>;
  bytes: number;
}

export interface AuditTailView {
  /** The last records (about the last MiB of lines), oldest first; unparsable lines are skipped. */
  records: AuditRecord[];
  /** Bytes read from the file for this view (at most TAIL_WINDOW_BYTES). */
  bytesRead: number;
}

const tails = new Map<string, Tail>();
// One reader at a time: concurrent page views wait for the same read instead of racing on `offset`.
let queue: Promise<unknown> = Promise.resolve();

function parse(line: string): AuditRecord | undefined {
  try {
    return line ? (JSON.parse(line) as AuditRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** Where reading `size` bytes of file `ino` starts: kept records stay only if what follows them is read too. */
function place(tail: Tail | undefined, ino: number, size: number): Tail {
  // Rotated (another file) or truncated in place: the kept records are still the latest before the
  // new file's first line, so they stay; the new file is read from its start.
  const fresh = tail === undefined || tail.ino !== ino || size < tail.offset;
  const next: Tail = fresh ? { ino, offset: 0, aligned: true, entries: tail?.entries ?? [], bytes: tail?.bytes ?? 0 } : tail;
  // More growth than one window (or a first look at a large file): read only the window at the end,
  // from its first line boundary; what was kept is older than a gap nobody read, so it goes.
  if (size - next.offset > TAIL_WINDOW_BYTES) return { ino, offset: size - TAIL_WINDOW_BYTES, aligned: false, entries: [], bytes: 0 };
  return next;
}

async function refresh(file: string): Promise<AuditTailView> {
  let handle;
  try {
    handle = await open(file, 'r');
    const { size, ino } = await handle.stat();
    const tail = place(tails.get(file), ino, size);
    tails.set(file, tail);
    // Bounded by place(): never more than the window, so neither this buffer nor the parsing below
    // grows with the log (an unbounded read stalled every request on the main thread).
    const fresh = Buffer.alloc(size - tail.offset);
    const { bytesRead } = await handle.read(fresh, 0, fresh.length, tail.offset);
    const chunk = fresh.subarray(0, bytesRead);
    // Started mid-line: the first piece is the end of a line whose start was not read.
    const start = tail.aligned ? 0 : chunk.indexOf(0x0a) + 1;
    if (!tail.aligned && start === 0) {
      // No line ends in the window: all of it is the middle of one (over-long) line.
      tail.offset += chunk.length;
      return { records: tail.entries.map((e) => e.record), bytesRead };
    }
    const end = chunk.lastIndexOf(0x0a);
    if (end >= start) {
      for (const line of chunk.subarray(start, end).toString('utf8').split('\n')) {
        const record = parse(line);
        if (!record) continue;
        const bytes = Buffer.byteLength(line) + 1;
        tail.entries.push({ bytes, record });
        tail.bytes += bytes;
      }
      tail.offset += end + 1;
      tail.aligned = true;
    } else {
      tail.offset += start;
      tail.aligned = true;
    }
    let drop = 0;
    while (tail.bytes > TAIL_WINDOW_BYTES && drop < tail.entries.length) tail.bytes -= (tail.entries[drop++] as { bytes: number }).bytes;
    if (drop > 0) tail.entries.splice(0, drop);
    return { records: tail.entries.map((e) => e.record), bytesRead };
  } catch {
    return { records: tails.get(file)?.entries.map((e) => e.record) ?? [], bytesRead: 0 };
  } finally {
    await handle?.close();
  }
}

/** The last records of the audit log (about its last MiB), read in at most one MiB per call. */
export function auditTail(file: string): Promise<AuditTailView> {
  const next = queue.then(() => refresh(file));
  queue = next.catch(() => undefined);
  return next;
}
