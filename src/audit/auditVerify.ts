// `audit verify`: walks the chain over files in order, in constant memory, rebuilds the Merkle tree,
// checks every checkpoint (origin, size, root, signature), the anchor and that the log is sealed.
import { GENESIS_HASH, legacyLineHash } from './auditChain.ts';
import { AuditReadError, linesOfFiles, type AuditLine } from './auditLines.ts';
import type { AuditCheckpoint } from './auditRecord.ts';
import { checkCheckpoint, type CheckpointRules, type VerifyKey } from './auditVerifyCheckpoint.ts';
import { CompactTree, leafHash } from './merkleTree.ts';
import type { CheckpointBody } from './signedNote.ts';

export type VerifyProblem =
  | 'changed' | 'missing' | 'inserted' | 'reordered' | 'gap-between-files' | 'bad-signature' | 'torn' | 'unreadable'
  | 'unchained' | 'unsigned' | 'origin-mismatch' | 'unsealed' | 'shortened' | 'anchor-mismatch' | 'missing-start';

export interface VerifyFailure {
  problem: VerifyProblem;
  file: string;
  line: number;
  seq?: number;
  message: string;
}

export interface VerifyOptions {
  keys?: readonly VerifyKey[];
  origin?: string;
  /** A trusted checkpoint: the files must reach its size and agree with its root. */
  anchor?: CheckpointBody & { source: string };
  /** A live log: an unsealed tail is reported, and fails only once its oldest record is older than this. */
  liveMaxAgeSeconds?: number;
  /** Files that do not start at seq 1: the tree starts at the first checkpoint that carries its range. */
  partial?: boolean;
  now?: number;
}

export interface VerifyReport {
  failure?: VerifyFailure;
  files: number;
  records: number;
  checkpoints: number;
  /** Checkpoints whose signature was checked and is good (0 without a key). */
  signaturesChecked: number;
  keys: string[];
  origin?: string;
  treeSize?: number;
  root?: string;
  firstSeq?: number;
  lastSeq?: number;
  firstTime?: string;
  lastTime?: string;
  /** True when the first record starts the chain (seq 1). */
  startsChain: boolean;
  /** Records before the tree could be rebuilt (--partial): chained, not covered by a checked root. */
  uncovered: number;
  lastCheckpointSeq?: number;
  /** Records after the last checkpoint: chained, not yet signed. */
  afterLastCheckpoint: number;
  /** Time of the oldest record after the last checkpoint. */
  unsealedSince?: string;
  anchor?: { source: string; size: number };
}

interface Entry {
  file: string;
  line: number;
  seq: number;
  prev: string;
  hash: string;
  leaf: Buffer;
  bytes: Buffer;
  time?: string;
  event?: string;
  checkpoint?: AuditCheckpoint;
  /** Fields beyond seq, prev, time, event, checkpoint (checked on checkpoint records only). */
  extraFields: string[];
  firstInFile: boolean;
}

type Parsed = { entry: Entry } | { failure: VerifyFailure };

const RECORD_FIELDS = new Set(['seq', 'prev', 'time', 'event', 'checkpoint']);

function parse(l: AuditLine, firstInFile: boolean, legacy: boolean): Parsed {
  const where = { file: l.file, line: l.line };
  if (!l.terminated) return { failure: { ...where, problem: 'torn', message: 'the last line has no newline: torn by a crash or still being written' } };
  let v: { seq?: unknown; prev?: unknown; time?: unknown; event?: unknown; checkpoint?: AuditCheckpoint };
  try {
    v = JSON.parse(l.bytes.toString('utf8')) as typeof v;
  } catch {
    return { failure: { ...where, problem: 'changed', message: 'not a JSON record' } };
  }
  if (v.seq === undefined && v.prev === undefined) return { failure: { ...where, problem: 'unchained', message: 'a line without seq and prev: not part of the log (inserted, or written before the chain existed)' } };
  if (!Number.isSafeInteger(v.seq) || (v.seq as number) < 1 || typeof v.prev !== 'string') {
    return { failure: { ...where, problem: 'changed', message: 'seq or prev is missing or malformed' } };
  }
  const leaf = leafHash(l.bytes);
  return {
    entry: {
      ...where,
      seq: v.seq as number,
      prev: v.prev,
      hash: legacy ? legacyLineHash(l.bytes) : `sha256:${leaf.toString('hex')}`,
      leaf,
      bytes: l.bytes,
      time: typeof v.time === 'string' ? v.time : undefined,
      event: typeof v.event === 'string' ? v.event : undefined,
      checkpoint: v.checkpoint,
      extraFields: v.event === 'audit.checkpoint' ? Object.keys(v).filter((k) => !RECORD_FIELDS.has(k)) : [],
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

/**
 * A checkpoint record: no fields a checkpoint lacks, its root and signatures checked against the tree so
 * far; with --partial the first checkpoint whose range hashes to its (checked) root seeds the tree.
 */
function acceptCheckpoint(e: Entry, tree: CompactTree | undefined, rules: CheckpointRules, report: VerifyReport): { failure: VerifyFailure } | { tree: CompactTree | undefined } {
  if (e.extraFields.length > 0) return { failure: at(e, 'changed', `a checkpoint record with fields no checkpoint record has: ${e.extraFields.join(', ')}`) };
  const verdict = checkCheckpoint(e.checkpoint ?? ({} as AuditCheckpoint), e.seq, e.prev, e.time ?? '', tree, rules);
  if (!verdict.ok) return { failure: at(e, verdict.problem, verdict.message) };
  rules.origin ??= verdict.origin;
  report.origin ??= verdict.origin;
  if (verdict.signed) report.signaturesChecked += 1;
  if (!tree && verdict.root && e.checkpoint?.range) {
    const seeded = CompactTree.fromJSON({ size: verdict.size, range: e.checkpoint.range });
    if (seeded?.root().equals(verdict.root)) tree = seeded;
  }
  report.checkpoints += 1;
  report.lastCheckpointSeq = e.seq;
  report.afterLastCheckpoint = -1;
  return { tree };
}

export async function verifyAuditFiles(files: readonly string[], options: VerifyOptions = {}): Promise<VerifyReport> {
  const keys = options.keys ?? [];
  const report: VerifyReport = { files: files.length, records: 0, checkpoints: 0, signaturesChecked: 0, keys: keys.map((k) => k.label), startsChain: false, uncovered: 0, afterLastCheckpoint: 0 };
  const rules: CheckpointRules = { keys, origin: options.origin ?? options.anchor?.origin };
  const anchor = options.anchor;
  if (anchor) report.anchor = { source: anchor.source, size: anchor.size };
  let tree: CompactTree | undefined;
  let last: Entry | undefined;
  let beforeLast: Entry | undefined;
  let pending: Entry | undefined;
  let currentFile: string | undefined;
  let legacy = false;

  const accept = (e: Entry): VerifyFailure | undefined => {
    if (!last) {
      report.firstSeq = e.seq;
      report.firstTime = e.time;
      report.startsChain = e.seq === 1 && e.prev === GENESIS_HASH;
      if (report.startsChain) tree = new CompactTree();
      else if (!options.partial) return at(e, 'missing-start', `the first record is seq ${e.seq}${e.seq === 1 ? ' with a prev that is not the genesis hash' : ''}: the files holding the log before it were deleted or not given (--partial verifies from the first checkpoint on)`);
    }
    if (e.event === 'audit.checkpoint') {
      const checked = acceptCheckpoint(e, tree, rules, report);
      if ('failure' in checked) return checked.failure;
      tree = checked.tree;
    }
    if (tree) tree.append(e.leaf);
    else report.uncovered += 1;
    if (tree && anchor && tree.size === anchor.size && !tree.root().equals(anchor.root)) {
      return at(e, 'anchor-mismatch', `the log up to this record (size ${tree.size}) hashes to ${tree.root().toString('base64')}, but the anchor ${anchor.source} signs ${anchor.root.toString('base64')}: the log was rewritten`);
    }
    report.records += 1;
    report.afterLastCheckpoint += 1;
    if (report.afterLastCheckpoint === 1) report.unsealedSince = e.time;
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
      const parsed = parse(l, firstInFile, legacy);
      if ('failure' in parsed) return { ...report, failure: parsed.failure };
      const e = parsed.entry;
      // A version 1 chain (before the Merkle tree) links by the plain SHA-256 of the line: seen at
      // the first link, then used for the whole set (a log is one or the other, never mixed).
      if (last && report.records === 1 && e.prev !== last.hash && e.prev === legacyLineHash(last.bytes)) {
        legacy = true;
        last.hash = e.prev;
        e.hash = legacyLineHash(e.bytes);
      }
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
  if (tree) {
    report.treeSize = tree.size;
    report.root = tree.root().toString('base64');
  }
  const failure = last ? endOfLog(report, last, tree, options) : undefined;
  return failure ? { ...report, failure } : report;
}

/** What the end of the files must show: the anchor reached, every record sealed by a checkpoint. */
function endOfLog(report: VerifyReport, last: Entry, tree: CompactTree | undefined, options: VerifyOptions): VerifyFailure | undefined {
  const anchor = options.anchor;
  if (anchor && (tree?.size ?? 0) < anchor.size) {
    return at(last, 'shortened', `the files end at seq ${last.seq}, but the anchor ${anchor.source} covers ${anchor.size} records: seq ${last.seq + 1}..${anchor.size} were removed (the log cut back, or its newest file deleted)`);
  }
  if (report.afterLastCheckpoint === 0) return undefined;
  const tail = `${report.afterLastCheckpoint} record(s) after the last checkpoint (${report.lastCheckpointSeq === undefined ? 'none in the files' : `seq ${report.lastCheckpointSeq}`})`;
  if (options.liveMaxAgeSeconds === undefined) {
    return at(last, 'unsealed', `${tail}: not covered by any signature (records appended, or the log cut back and its later checkpoints removed; a running gateway's log: --live)`);
  }
  const age = ((options.now ?? Date.now()) - Date.parse(report.unsealedSince ?? '')) / 1000;
  if (!(age <= options.liveMaxAgeSeconds)) return at(last, 'unsealed', `${tail}, the oldest ${Number.isFinite(age) ? `${Math.round(age)} s` : 'of unknown'} old: past the --live limit of ${options.liveMaxAgeSeconds} s`);
  return undefined;
}
