// One checkpoint record as `audit verify` checks it: the note names this log (origin), the tree size
// and root the records before it hash to, and carries a signature by a key valid at its time.
import type { KeyObject } from 'node:crypto';
import { auditKeyId, verifyCheckpoint } from './auditCheckpoint.ts';
import type { AuditCheckpoint } from './auditRecord.ts';
import type { CompactTree } from './merkleTree.ts';
import { noteKeyHash, noteSignedBy, parseCheckpointNote } from './signedNote.ts';

/** A public key and when it may sign (checkpoint time within [from, until)). */
export interface VerifyKey {
  publicKey: KeyObject;
  label: string;
  from?: number;
  until?: number;
}

export interface CheckpointRules {
  keys: readonly VerifyKey[];
  /** The origin every checkpoint must name (from --origin or the anchor; else the first one seen). */
  origin?: string;
}

export type CheckpointVerdict =
  | { ok: true; origin?: string; signed: boolean; size: number; root?: Buffer }
  | { ok: false; problem: 'changed' | 'bad-signature' | 'unsigned' | 'origin-mismatch'; message: string };

const CHECKPOINT_FIELDS = new Set(['seq', 'hash', 'records', 'note', 'range']);

const TIME = String.raw`\d{4}-\d\d-\d\d(?:T\d\d:\d\d(?::\d\d(?:\.\d+)?)?Z)?`;
const KEY_SPEC = new RegExp(`^(.+?)(?::(${TIME})?(?::(${TIME})?)?)?$`);

/** `FILE[:FROM[:UNTIL]]` (dates or UTC times), as `--key` takes it. */
export function parseKeySpec(spec: string): { file: string; from?: number; until?: number } {
  const m = KEY_SPEC.exec(spec);
  if (!m) return { file: spec };
  return { file: m[1] as string, ...(m[2] && { from: Date.parse(m[2]) }), ...(m[3] && { until: Date.parse(m[3]) }) };
}

function validAt(key: VerifyKey, time: number): boolean {
  return (key.from === undefined || time >= key.from) && (key.until === undefined || time < key.until);
}

/**
 * Checks checkpoint `cp` of the record at `seq` (with `prev` and `time`) against `tree`, the tree of
 * every record before it (undefined when the files do not start the log and no range seeded it yet).
 */
export function checkCheckpoint(cp: AuditCheckpoint, seq: number, prev: string, time: string, tree: CompactTree | undefined, rules: CheckpointRules): CheckpointVerdict {
  if (cp.seq !== seq - 1 || cp.hash !== prev) return { ok: false, problem: 'changed', message: `the checkpoint does not name the record before it (seq ${seq - 1}, ${prev})` };
  const at = Date.parse(time);
  if (cp.note === undefined) {
    // A version 1 checkpoint (before the Merkle tree): the chain head, signed.
    const good = rules.keys.filter((k) => validAt(k, at)).some((k) => verifyCheckpoint(cp, time, k.publicKey, auditKeyId(k.publicKey)).ok);
    if (rules.keys.length > 0 && !good) return { ok: false, problem: cp.sig ? 'bad-signature' : 'unsigned', message: cp.sig ? `version 1 checkpoint signed by key ${cp.key ?? '(none named)'}: no given key valid at ${time} verifies it` : 'checkpoint carries no signature' };
    return { ok: true, signed: good, size: seq - 1 };
  }
  const note = parseCheckpointNote(cp.note);
  if (!note.ok) return { ok: false, problem: 'changed', message: `checkpoint note: ${note.message}` };
  const { origin, size, root, body, signatures } = note.value;
  if (size !== seq - 1) return { ok: false, problem: 'changed', message: `the checkpoint note says tree size ${size}, but it follows record seq ${seq - 1}` };
  if (rules.origin !== undefined && origin !== rules.origin) return { ok: false, problem: 'origin-mismatch', message: `the checkpoint names origin ${origin}, not ${rules.origin}: another log's records` };
  // Nothing signs the checkpoint record's own bytes: nothing may be in it beyond what is checked here.
  const extra = Object.keys(cp).filter((k) => !CHECKPOINT_FIELDS.has(k));
  if (extra.length > 0) return { ok: false, problem: 'changed', message: `the checkpoint carries fields no checkpoint has: ${extra.join(', ')}` };
  if (tree && !tree.root().equals(root)) return { ok: false, problem: 'changed', message: `the records before it hash to Merkle root ${tree.root().toString('base64')}, but the checkpoint signs ${root.toString('base64')}: records before it were changed, removed or inserted` };
  if (tree && cp.range !== undefined && JSON.stringify(cp.range) !== JSON.stringify(tree.toJSON().range)) return { ok: false, problem: 'changed', message: 'the checkpoint\'s range is not the right edge of the tree of the records before it' };
  if (rules.keys.length === 0) return { ok: true, origin, signed: false, size, root };
  if (signatures.length === 0) return { ok: false, problem: 'unsigned', message: 'checkpoint carries no signature (no audit.signingKey configured?)' };
  if (rules.keys.some((k) => validAt(k, at) && noteSignedBy(body, signatures, origin, k.publicKey))) return { ok: true, origin, signed: true, size, root };
  const named = signatures.map((s) => `${s.name}+${s.keyHash.toString('hex')}`).join(', ');
  const given = rules.keys.map((k) => `${k.label} (${origin}+${noteKeyHash(origin, k.publicKey).toString('hex')})`).join(', ');
  const expired = rules.keys.some((k) => !validAt(k, at) && noteSignedBy(body, signatures, origin, k.publicKey));
  return { ok: false, problem: 'bad-signature', message: expired ? `signed at ${time} by a key outside its validity period` : `signed by ${named}; none of the given keys (${given}) verifies it` };
}
