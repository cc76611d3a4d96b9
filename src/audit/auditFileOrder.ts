// Puts a set of audit files in chain order by the seq of each file's first record, so a shell glob
// (`audit.log*`, which lists the live file first) can be handed to verify as it is.
import { resolve } from 'node:path';
import { linesOf } from './auditLines.ts';

/** The seq of a file's first record: -1 for a line without one, MAX_SAFE_INTEGER for an empty or unreadable file. */
export async function firstSeq(file: string): Promise<number> {
  try {
    for await (const l of linesOf(file)) {
      try {
        const v = JSON.parse(l.bytes.toString('utf8')) as { seq?: unknown };
        // A file from before the chain (no seq) comes first; its first chained record follows it.
        return Number.isSafeInteger(v.seq) ? (v.seq as number) : -1;
      } catch {
        return -1;
      }
    }
  } catch {
    // Unreadable: verify reports it where it stands.
    return Number.MAX_SAFE_INTEGER;
  }
  // Empty (just rotated in): holds nothing, last.
  return Number.MAX_SAFE_INTEGER;
}

/** The files sorted by their first record's seq; ties keep the order given. */
export async function orderAuditFiles(files: readonly string[]): Promise<string[]> {
  const keyed = await Promise.all(files.map(async (file, index) => ({ file, index, seq: await firstSeq(file) })));
  keyed.sort((a, b) => a.seq - b.seq || a.index - b.index);
  return keyed.map((k) => k.file);
}

/** Why `files` may not be read together (the same records twice: `x.1` and `x.1.gz`, or a file given twice). */
export function overlappingInputs(files: readonly string[]): string | undefined {
  const seen = new Map<string, string>();
  for (const file of files) {
    const key = resolve(file).replace(/\.gz$/, '');
    const before = seen.get(key);
    if (before !== undefined) return `${before} and ${file} hold the same records (one is the other compressed, or given twice): give one of them`;
    seen.set(key, file);
  }
  return undefined;
}
