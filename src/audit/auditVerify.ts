// `audit verify`: walks the chain over files in order, in constant memory, checks every link and
// every checkpoint signature, and names the first bad record and what is wrong with it.
import type { KeyObject } from 'node:crypto';
import { GENESIS_HASH, lineHash } from './auditChain.ts';
import { auditKeyId, verifyCheckpoint } from './auditCheckpoint.ts';
import { AuditReadError, linesOfFiles, type AuditLine } from './auditLines.ts';
import type { AuditCheckpoint } from './auditRecord.ts';

export type VerifyProblem = 'changed' | 'missing' | 'inserted' | 'reordered' | 'gap-between-files' | 'bad-signature' | 'torn' | 'unreadable';

export interface VerifyFailure {
  problem: VerifyProblem;
  file: string;
  line: number;
  seq?: number;
  message: string;
}

export interface VerifyReport {
  failure?: VerifyFailure;
  files: number;
  records: number;
  /** Lines before the first chained record (written before the chain existed): not protected. */
  unchained: number;
  checkpoints: number;
  /** Checkpoints whose signature was checked and is good (0 without a key). */
  signaturesChecked: number;
  keyId?: string;
  firstSeq?: number;
  lastSeq?: number;
  firstTime?: string;
  lastTime?: string;
  /** True when the first record starts the chain (seq 1); false when earlier files were not given. */
  startsChain: boolean;
  lastCheckpointSeq?: number;
  /** Records after the last checkpoint: protected by the chain, not yet by a signature. */
  afterLastCheckpoint: number;
}

interface Entry {
  file: string;
  line: number;
  seq: number;
  prev: string;
  hash: string;
  time?: string;
  event?: string;
  checkpoint?: AuditCheckpoint;
  firstInFile: boolean;
}

type Parsed = { entry: Entry } | { unchained: true; hash: string } | { failure: VerifyFailure };

function parse(l: AuditLine, firstInFile: boolean): Parsed {
  const where = { file: l.file, line: l.line };
  if (!l.terminated) return { failure: { ...where, problem: 'torn', message: 'the last line has no newline: torn by a crash or still being written' } };
  let v: { seq?: unknown; prev?: unknown; time?: unknown; event?: unknown; checkpoint?: AuditCheckpoint };
  try {
    v = JSON.parse(l.bytes.toString('utf8')) as typeof v;
  } catch {
    return { failure: { ...where, problem: 'changed', message: 'not a JSON record' } };
  }
  const hash = lineHash(l.bytes);
  if (v.seq === undefined && v.prev === undefined && typeof v.event === 'string') return { unchained: true, hash };
  if (!Number.isSafeInteger(v.seq) || (v.seq as number) < 1 || typeof v.prev !== 'string') {
    return { failure: { ...where, problem: 'changed', message: 'seq or prev is missing or malformed' } };
  }
  return {
    entry: {
      ...where,
      seq: v.seq as number,
      prev: v.prev,
      hash,
      time: typeof v.time === 'string' ? v.time : undefined,
      event: typeof v.event === 'string' ? v.event : undefined,
      checkpoint: v.checkpoint,
      firstInFile,
    },
  };
}

function at(e: Entry, problem: VerifyProblem, message: string): VerifyFailure {
  return { problem, file: e.file, line: e.line, seq: e.seq, message };
}

/** Why record `r` does not follow `last`, using the record after it (`next`) to tell the cases apart. */
function classify(last: Entry, r: Entry, next: Entry | undefined): VerifyFailure {
  const expected = last.seq + 1;
  if (r.prev === last.hash) return at(r, 'changed', `links to seq ${last.seq} but says seq ${r.seq}: its seq was altered`);
  if (r.seq === expected) {
    if (next && next.prev !== r.hash && next.seq === r.seq + 1) return at(r, 'changed', `its bytes or its prev were altered: it names a prev that seq ${last.seq} does not hash to, and seq ${next.seq} does not link to it`);
    return at(last, 'changed', `its bytes no longer hash to the prev that the next record (seq ${r.seq}, ${r.file}:${r.line}) names`);
  }
  if (r.seq > expected) {
    if (next && next.seq === expected && next.prev === last.hash && r.prev === next.hash) {
      return at(r, 'reordered', `seq ${r.seq} comes before seq ${next.seq} (line ${next.line}): the two were swapped`);
    }
    const range = expected === r.seq - 1 ? `seq ${expected} is` : `seq ${expected}..${r.seq - 1} are`;
    if (r.firstInFile && r.file !== last.file) {
      return at(r, 'gap-between-files', `${last.file} ends at seq ${last.seq} and ${r.file} starts at seq ${r.seq}: ${range} missing (a rotated file left out of the set, or files out of order)`);
    }
    return at(r, 'missing', `${range} missing before this record (deleted)`);
  }
  if (next && next.seq === expected && next.prev === last.hash) return at(r, 'inserted', `does not belong in the chain: the next record (seq ${next.seq}) continues from seq ${last.seq}`);
  if (r.firstInFile && r.file !== last.file) return at(r, 'reordered', `${r.file} starts at seq ${r.seq}, not after the end of ${last.file} (seq ${last.seq}): files given out of order or overlapping`);
  return at(r, 'reordered', `seq ${r.seq} comes after seq ${last.seq}: records out of order, or inserted`);
}

export async function verifyAuditFiles(files: readonly string[], options: { publicKey?: KeyObject } = {}): Promise<VerifyReport> {
  const keyId = options.publicKey && auditKeyId(options.publicKey);
  const report: VerifyReport = { files: files.length, records: 0, unchained: 0, checkpoints: 0, signaturesChecked: 0, startsChain: false, afterLastCheckpoint: 0, ...(keyId && { keyId }) };
  let last: Entry | undefined;
  let beforeLast: Entry | undefined;
  let pending: Entry | undefined;
  let unchainedHash: string | undefined;
  let currentFile: string | undefined;

  const accept = (e: Entry): VerifyFailure | undefined => {
    if (e.event === 'audit.checkpoint') {
      const cp = e.checkpoint;
      if (!cp || cp.seq !== e.seq - 1 || cp.hash !== e.prev) return at(e, 'changed', `the checkpoint does not name the record before it (seq ${e.seq - 1}, ${e.prev})`);
      if (options.publicKey && keyId) {
        const check = verifyCheckpoint(cp, e.time ?? '', options.publicKey, keyId);
        if (!check.ok) return at(e, 'bad-signature', check.message);
        report.signaturesChecked += 1;
      }
      report.checkpoints += 1;
      report.lastCheckpointSeq = e.seq;
      report.afterLastCheckpoint = -1;
    }
    if (!last) {
      report.firstSeq = e.seq;
      report.firstTime = e.time;
      report.startsChain = e.seq === 1 && (e.prev === GENESIS_HASH || e.prev === unchainedHash);
    }
    report.records += 1;
    report.afterLastCheckpoint += 1;
    report.lastSeq = e.seq;
    report.lastTime = e.time ?? report.lastTime;
    beforeLast = last;
    last = e;
    return undefined;
  };

  try {
    for await (const l of linesOfFiles(files)) {
      const firstInFile = l.file !== currentFile;
      currentFile = l.file;
      const parsed = parse(l, firstInFile);
      if ('failure' in parsed) return { ...report, failure: parsed.failure };
      if ('unchained' in parsed) {
        if (last) return { ...report, failure: { file: l.file, line: l.line, problem: 'changed', message: 'a record without seq and prev inside the chain' } };
        report.unchained += 1;
        unchainedHash = parsed.hash;
        continue;
      }
      const e = parsed.entry;
      if (pending && last) return { ...report, failure: classify(last, pending, e) };
      if (!last || (e.seq === last.seq + 1 && e.prev === last.hash)) {
        const bad = accept(e);
        if (bad) return { ...report, failure: bad };
        continue;
      }
      // A record that continues from the one before `last` with `last`'s seq: `last` was slipped in.
      if (beforeLast && e.prev === beforeLast.hash && e.seq === last.seq) {
        return { ...report, failure: at(last, 'inserted', `does not belong in the chain: the next record (seq ${e.seq}, line ${e.line}) continues from seq ${beforeLast.seq}`) };
      }
      pending = e;
    }
  } catch (err) {
    const file = err instanceof AuditReadError ? err.file : (currentFile ?? '');
    return { ...report, failure: { problem: 'unreadable', file, line: 0, message: err instanceof Error ? err.message : String(err) } };
  }
  if (pending && last) return { ...report, failure: classify(last, pending, undefined) };
  return report;
}
