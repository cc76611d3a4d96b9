// The last MiB of the audit log as parsed records, for the portal's activity views. Each call reads only
// what was appended since the last one, so a portal page costs the new records, not a MiB of I/O and JSON.
import { open } from 'node:fs/promises';
import type { AuditRecord } from '../audit/auditRecord.ts';

const TAIL_BYTES = 1 << 20;

interface Tail {
  ino: number;
  /** Bytes of the file read so far (up to the end of the last whole line). */
  offset: number;
  /** Whether `offset` is at the start of a line (false only before the first read of a file's tail). */
  aligned: boolean;
  entries: Array<{ bytes: number; record: AuditRecord }>;
  bytes: number;
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

async function refresh(file: string): Promise<AuditRecord[]> {
  let handle;
  try {
    handle = await open(file, 'r');
    const { size, ino } = await handle.stat();
    let tail = tails.get(file);
    // A new file (rotation) or a shorter one: start again from its last MiB.
    if (!tail || tail.ino !== ino || size < tail.offset) {
      const offset = Math.max(0, size - TAIL_BYTES);
      tail = { ino, offset, aligned: offset === 0, entries: [], bytes: 0 };
      tails.set(file, tail);
    }
    const fresh = Buffer.alloc(size - tail.offset);
    await handle.read(fresh, 0, fresh.length, tail.offset);
    const end = fresh.lastIndexOf(0x0a);
    if (end >= 0) {
      const lines = fresh.subarray(0, end).toString('utf8').split('\n');
      // Started mid-file: the first piece is the end of a line read by nobody.
      if (!tail.aligned) lines.shift();
      for (const line of lines) {
        const record = parse(line);
        if (!record) continue;
        const bytes = Buffer.byteLength(line) + 1;
        tail.entries.push({ bytes, record });
        tail.bytes += bytes;
      }
      tail.offset += end + 1;
      tail.aligned = true;
      while (tail.bytes > TAIL_BYTES && tail.entries.length > 0) tail.bytes -= (tail.entries.shift() as { bytes: number }).bytes;
    }
    return tail.entries.map((e) => e.record);
  } catch {
    return [];
  } finally {
    await handle?.close();
  }
}

/** The last records of the audit log (about its last MiB), oldest first; unparsable lines are skipped. */
export function auditTail(file: string): Promise<AuditRecord[]> {
  const next = queue.then(() => refresh(file));
  queue = next.catch(() => undefined);
  return next;
}
