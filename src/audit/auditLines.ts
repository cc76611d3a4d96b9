// Reads audit files line by line as raw bytes (gzip-compressed rotations too), in constant memory:
// verify hashes the exact bytes, so nothing here decodes, trims or re-encodes a line.
import { GatehouseError } from '../errors/refusal.ts';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';

export interface AuditLine {
  file: string;
  /** 1-based line number within `file`. */
  line: number;
  /** The line's bytes without its LF. */
  bytes: Buffer;
  /** False for a last line that has no LF (torn or still being written). */
  terminated: boolean;
}

function open(file: string): Readable {
  const raw = createReadStream(file, { highWaterMark: 256 * 1024 });
  return file.endsWith('.gz') ? raw.pipe(createGunzip()) : raw;
}

/** The lines of one file, in order. Errors (missing file, bad gzip) are thrown to the caller. */
export async function* linesOf(file: string): AsyncGenerator<AuditLine> {
  let carry: Buffer | undefined;
  let line = 0;
  const stream = open(file);
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let data = carry ? Buffer.concat([carry, chunk]) : chunk;
    let from = 0;
    for (let nl = data.indexOf(0x0a, from); nl >= 0; nl = data.indexOf(0x0a, from)) {
      line += 1;
      yield { file, line, bytes: data.subarray(from, nl), terminated: true };
      from = nl + 1;
    }
    // Only the unfinished tail is kept: memory stays bounded by the longest line.
    data = data.subarray(from);
    carry = data.length > 0 ? Buffer.from(data) : undefined;
  }
  if (carry) yield { file, line: line + 1, bytes: carry, terminated: false };
}

/** A file that could not be read (missing, unreadable, bad gzip), named. */
export class AuditReadError extends GatehouseError<'GH_AUDIT_UNREADABLE'> {
  readonly file: string;
  constructor(file: string, cause: unknown) {
    super('GH_AUDIT_UNREADABLE', cause instanceof Error ? cause.message : String(cause));
    this.name = 'AuditReadError';
    this.file = file;
  }
}

/** The lines of several files, one after the other, in the order given. */
export async function* linesOfFiles(files: readonly string[]): AsyncGenerator<AuditLine> {
  for (const file of files) {
    try {
      yield* linesOf(file);
    } catch (err) {
      throw err instanceof AuditReadError ? err : new AuditReadError(file, err);
    }
  }
}
