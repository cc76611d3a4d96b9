// The hash chain of the audit log: what is hashed (a record's exact line bytes) and where a writer
// continues the chain from when it starts (the last line of the file, or the head saved at rotation).
import { hash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from 'node:fs';

/** The `prev` of the very first record of a chain. */
export const GENESIS_HASH = `sha256:${'0'.repeat(64)}`;

/**
 * The hash of one record: SHA-256 over the exact bytes of its line, without the terminating LF.
 * Hashing bytes (not a re-serialization) means any change to the line, even whitespace, is seen.
 */
export function lineHash(line: Buffer | string): string {
  // The one-shot digest: a Hash object per record was a visible share of writing a record.
  return `sha256:${hash('sha256', line, 'hex')}`;
}

/** The last record of the chain so far: the next record gets `seq + 1` and `prev = hash`. */
export interface ChainHead {
  seq: number;
  hash: string;
}

export const EMPTY_CHAIN: ChainHead = { seq: 0, hash: GENESIS_HASH };

/**
 * Where the head is saved when the file is reopened or closed: found again if the next file starts
 * empty. A hidden name beside the log, so `audit.log*` (what one hands to verify) does not match it.
 */
export function headFileOf(auditFile: string): string {
  return join(dirname(auditFile), `.${basename(auditFile)}.head`);
}

export type ChainHeadResult =
  | { ok: true; head: ChainHead; from: 'file' | 'unchained-file' | 'head-file' | 'new'; tornTail: boolean }
  | { ok: false; code: 'unreadable'; message: string };

/** The last complete line of a file (up to 4 MB back), and whether bytes follow it without a newline. */
function lastLine(file: string): { line: Buffer; torn: boolean } | undefined {
  const fd = openSync(file, 'r');
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile() || stat.size === 0) return undefined;
    for (let window = 64 * 1024; ; window *= 4) {
      const start = Math.max(0, stat.size - window);
      const buf = Buffer.alloc(stat.size - start);
      readSync(fd, buf, 0, buf.length, start);
      const torn = buf[buf.length - 1] !== 0x0a;
      const end = torn ? buf.lastIndexOf(0x0a) : buf.length - 1;
      if (end < 0 && start === 0) return undefined;
      const begin = end < 0 ? -1 : buf.lastIndexOf(0x0a, end - 1);
      if (begin >= 0 || start === 0) return { line: buf.subarray(begin + 1, end), torn };
      if (window >= 4 * 1024 * 1024) return undefined;
    }
  } finally {
    closeSync(fd);
  }
}

function parseHead(text: string): ChainHead | undefined {
  try {
    const v = JSON.parse(text) as { seq?: unknown; hash?: unknown };
    if (Number.isSafeInteger(v.seq) && typeof v.hash === 'string') return { seq: v.seq as number, hash: v.hash };
  } catch {
    // fall through: not a head
  }
  return undefined;
}

/**
 * Where a writer starting on `auditFile` continues: after the file's last record; if the file is
 * empty or missing (just rotated), after the head saved at the last reopen or close; else a new chain.
 */
export function readChainHead(auditFile: string): ChainHeadResult {
  try {
    if (existsSync(auditFile)) {
      const last = lastLine(auditFile);
      if (last) {
        let record: { seq?: unknown } = {};
        try {
          record = JSON.parse(last.line.toString('utf8')) as { seq?: unknown };
        } catch {
          // A line that is not JSON: linked to like any other line (verify will name it).
        }
        // A file from before the chain (no seq): the new chain starts at 1, linked to its last line.
        if (!Number.isSafeInteger(record.seq)) return { ok: true, head: { seq: 0, hash: lineHash(last.line) }, from: 'unchained-file', tornTail: last.torn };
        return { ok: true, head: { seq: record.seq as number, hash: lineHash(last.line) }, from: 'file', tornTail: last.torn };
      }
    }
    const headFile = headFileOf(auditFile);
    if (existsSync(headFile)) {
      const head = parseHead(readFileSync(headFile, 'utf8'));
      if (!head) return { ok: false, code: 'unreadable', message: `${headFile}: not a chain head` };
      return { ok: true, head, from: 'head-file', tornTail: false };
    }
    return { ok: true, head: EMPTY_CHAIN, from: 'new', tornTail: false };
  } catch (err) {
    return { ok: false, code: 'unreadable', message: `${auditFile}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** Saves the head (write to a temporary file, then rename: never half-written). Best effort. */
export function saveChainHead(auditFile: string, head: ChainHead): void {
  const target = headFileOf(auditFile);
  const temporary = `${target}.${process.pid}.tmp`;
  try {
    writeFileSync(temporary, JSON.stringify(head) + '\n', { mode: 0o640 });
    renameSync(temporary, target);
  } catch {
    // The head file only helps a restart on an empty file; the chain itself is in the log.
  }
}
