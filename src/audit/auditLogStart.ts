// Where the audit writer continues at start: the chain head and Merkle tree saved beside the log,
// extended by the live file's records after it; refuses a log shorter than, or disagreeing with, its
// last checkpoint or a checkpoint a witness cosigned.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { GENESIS_HASH, headFileOf, lineHash, type ChainHead } from './auditChain.ts';
import { CompactTree, leafHashHex } from './merkleTree.ts';
import type { KeyObject } from 'node:crypto';
import { readCosignedAnchors, type StartAnchor } from './cosignedAnchors.ts';
import { parseCheckpointNote } from './signedNote.ts';

/** What a new log records about the log before it (its last checkpoint), in its first record. */
export interface PreviousLog {
  reason: string;
  origin?: string;
  size?: number;
  root?: string;
}

export interface LogStart {
  head: ChainHead;
  tree: CompactTree;
  /** The live file ends in bytes without a newline (a crash mid-line). */
  tornTail: boolean;
  /** Set when this start begins a new log (seq 1) although an earlier one existed. */
  newLog?: PreviousLog;
  /** The tree size saved before this start, and the stored hashes of the records read back after it. */
  baseSize: number;
  since: string[];
}

export type LogStartCode = 'unreadable' | 'shortened' | 'diverged' | 'no-tree' | 'origin-changed';
export type LogStartResult = { ok: true; value: LogStart } | { ok: false; code: LogStartCode; message: string };

/** The saved state: the chain head and the compact tree over records 1..seq. */
export interface SavedLogState {
  seq: number;
  hash: string;
  tree?: CompactTree;
}

export function readSavedState(auditFile: string): SavedLogState | undefined | 'unreadable' {
  const file = headFileOf(auditFile);
  if (!existsSync(file)) return undefined;
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as { seq?: unknown; hash?: unknown; tree?: unknown };
    if (!Number.isSafeInteger(v.seq) || typeof v.hash !== 'string') return 'unreadable';
    const tree = v.tree === undefined ? undefined : CompactTree.fromJSON(v.tree);
    if (v.tree !== undefined && (!tree || tree.size !== v.seq)) return 'unreadable';
    return { seq: v.seq as number, hash: v.hash, ...(tree && { tree }) };
  } catch {
    return 'unreadable';
  }
}

function isJsonLine(line: Buffer): boolean {
  try {
    JSON.parse(line.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

const SEQ = /^\{"seq":(\d+),"prev":"(sha256:[0-9a-f]{64})"/;

/** Calls `each` for every complete line of a (live, uncompressed) file, synchronously, in bounded memory. */
function scanLines(file: string, each: (line: Buffer) => void): { torn: boolean } {
  if (!existsSync(file)) return { torn: false };
  const fd = openSync(file, 'r');
  try {
    // A device or pipe (/dev/full, a FIFO) holds no records to read back, and may never end.
    if (!fstatSync(fd).isFile()) return { torn: false };
    const chunk = Buffer.alloc(1024 * 1024);
    let carry = Buffer.alloc(0);
    for (let n = readSync(fd, chunk); n > 0; n = readSync(fd, chunk)) {
      const data = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, n)]) : chunk.subarray(0, n);
      let from = 0;
      for (let nl = data.indexOf(0x0a); nl >= 0; nl = data.indexOf(0x0a, from)) {
        each(data.subarray(from, nl));
        from = nl + 1;
      }
      carry = Buffer.from(data.subarray(from));
    }
    return { torn: carry.length > 0 };
  } finally {
    closeSync(fd);
  }
}

function lastCheckpoint(checkpointFile: string): { origin: string; size: number; root: string } | undefined | 'unreadable' {
  if (!existsSync(checkpointFile)) return undefined;
  try {
    const parsed = parseCheckpointNote(readFileSync(checkpointFile, 'utf8'));
    return parsed.ok ? { origin: parsed.value.origin, size: parsed.value.size, root: parsed.value.root.toString('base64') } : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

const refuse = (code: LogStartCode, message: string): LogStartResult => ({ ok: false, code, message });
const NEW_LOG_HINT = 'to start a new log on purpose, move the log files and their hidden state away and set a new audit.origin';

/** The witnesses whose kept cosigned notes bind the start, and the key the log's own signature is checked with. */
export interface StartWitnesses {
  witnesses?: readonly { name: string; vkey: string }[];
  logKey?: KeyObject;
}

/**
 * Where a writer starting on `auditFile` continues. The tree is rebuilt from the saved state plus
 * the live file's records after it (or from the live file alone when it starts the chain). The log
 * must reach every checkpoint it knows of (its own last one, the ones its witnesses cosigned) and,
 * where the rebuilt tree passes through one's size, agree with its root.
 */
export function startLog(auditFile: string, origin: string, checkpointFile: string, bound: StartWitnesses = {}): LogStartResult {
  const saved = readSavedState(auditFile);
  const checkpoint = lastCheckpoint(checkpointFile);
  if (saved === 'unreadable') return refuse('unreadable', `${headFileOf(auditFile)}: not a saved audit log state`);
  if (checkpoint === 'unreadable') return refuse('unreadable', `${checkpointFile}: not a checkpoint note`);
  // An insider may remove the log's own checkpoint and saved state; the witnesses' notes still bind it.
  const cosigned = readCosignedAnchors(checkpointFile, origin, bound.witnesses ?? [], bound.logKey);
  if (!cosigned.ok) return refuse('unreadable', cosigned.message);
  const anchors: StartAnchor[] = [...(checkpoint && checkpoint.origin === origin ? [{ size: checkpoint.size, root: checkpoint.root, source: `the log's last checkpoint (${checkpointFile})` }] : []), ...cosigned.value];
  const rootsAt = new Map<number, string | undefined>(anchors.map((a) => [a.size, undefined]));
  const base = saved?.tree ? { head: { seq: saved.seq, hash: saved.hash }, tree: saved.tree.clone() } : { head: { seq: 0, hash: GENESIS_HASH }, tree: new CompactTree() };
  const baseKnown = saved?.tree !== undefined;
  // The root at each anchor's size, where the rebuilt tree passes through it (only there: O(log n) state).
  const noteRoot = () => {
    if (rootsAt.has(base.tree.size)) rootsAt.set(base.tree.size, base.tree.root().toString('base64'));
  };
  noteRoot();
  let head = base.head;
  let records = 0;
  let firstSeq: number | undefined;
  let fileLast: ChainHead | undefined;
  const since: string[] = [];
  let problem: { code: LogStartCode; message: string } | undefined;
  let scanned: { torn: boolean };
  try {
    scanned = scanLines(auditFile, (line) => {
      const m = SEQ.exec(line.toString('latin1', 0, 100));
      // A torn line left by a crash is not a record: the chain continued past it.
      if (!m || problem) return;
      const seq = Number(m[1]);
      records += 1;
      firstSeq ??= seq;
      fileLast = { seq, hash: seq === base.head.seq ? lineHash(line) : '' };
      if (baseKnown && seq <= base.head.seq) return;
      // A line torn by a crash (then ended by the newline the next start wrote) may still begin like a
      // record: only whole JSON lines are records.
      if (!isJsonLine(line)) {
        records -= 1;
        return;
      }
      if (seq !== head.seq + 1 || m[2] !== head.hash) {
        problem = baseKnown
          ? { code: 'diverged', message: `${auditFile}: record seq ${seq} does not continue the saved chain head (seq ${head.seq}): the file was rewritten, or records are missing; ${NEW_LOG_HINT}` }
          : { code: 'no-tree', message: `${auditFile} (from seq ${firstSeq}) cannot be continued: no saved Merkle tree state covers it, and it does not chain from seq 1 (a log from before the Merkle tree?); ${NEW_LOG_HINT}` };
        return;
      }
      const leaf = leafHashHex(line);
      head = { seq, hash: `sha256:${leaf}` };
      base.tree.appendHex(leaf, (h) => since.push(h));
      noteRoot();
    });
  } catch (err) {
    return refuse('unreadable', `${auditFile}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (problem) return refuse(problem.code, problem.message);
  if (fileLast && fileLast.seq < base.head.seq) {
    return refuse('shortened', `${auditFile} ends at seq ${fileLast.seq} but the log had reached seq ${base.head.seq} (${headFileOf(auditFile)}): the file was truncated; ${NEW_LOG_HINT}`);
  }
  if (fileLast && fileLast.seq === base.head.seq && fileLast.hash !== base.head.hash) {
    return refuse('diverged', `${auditFile}: its last record (seq ${fileLast.seq}) is not the one the log had reached (${headFileOf(auditFile)}): the file was rewritten; ${NEW_LOG_HINT}`);
  }
  const lastSeq = head.seq;
  if (checkpoint && checkpoint.origin !== origin) {
    if (records > 0 || saved) return refuse('origin-changed', `audit.origin is ${origin} but the log's last checkpoint (${checkpointFile}) names ${checkpoint.origin}: a log keeps its origin; ${NEW_LOG_HINT}`);
    return { ok: true, value: { head: { seq: 0, hash: GENESIS_HASH }, tree: new CompactTree(), tornTail: scanned.torn, newLog: { reason: 'new origin', ...checkpoint }, baseSize: 0, since: [] } };
  }
  for (const anchor of anchors) {
    if (lastSeq < anchor.size) return refuse('shortened', `${auditFile} ends at seq ${lastSeq} but ${anchor.source} covers ${anchor.size} records: the log was truncated or its files replaced; ${NEW_LOG_HINT}`);
    const root = rootsAt.get(anchor.size);
    if (root !== undefined && root !== anchor.root) return refuse('diverged', `${auditFile}: its first ${anchor.size} records do not have the root ${anchor.source} names: the log was rewritten; ${NEW_LOG_HINT}`);
  }
  if (saved && !saved.tree) {
    // A chain head from before the Merkle tree: a new log, linked by its first record to the old head.
    if (records > 0) return refuse('no-tree', `${auditFile} holds records from before the Merkle tree; ${NEW_LOG_HINT} (the old files stay verifiable)`);
    return { ok: true, value: { head: { seq: 0, hash: GENESIS_HASH }, tree: new CompactTree(), tornTail: scanned.torn, newLog: { reason: `continues a log from before the Merkle tree, which ended at seq ${saved.seq} (${saved.hash})` }, baseSize: 0, since: [] } };
  }
  return { ok: true, value: { head, tree: base.tree, tornTail: scanned.torn, baseSize: base.head.seq, since } };
}

/** The default origin: this host and the log's absolute path (unique per instance on a host). */
export function defaultAuditOrigin(auditFile: string): string {
  return `${hostname()}/gatehouse${resolve(auditFile)}`.replace(/[\s+]/g, '_');
}

/** The default checkpoint file: beside the log, `audit.log` -> `audit.checkpoint` (not matched by `audit.log*`). */
export function defaultCheckpointFile(auditFile: string): string {
  return join(dirname(auditFile), `${basename(auditFile).replace(/\.log$/, '')}.checkpoint`);
}
