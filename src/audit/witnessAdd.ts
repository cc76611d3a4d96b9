// The witness's add-checkpoint decision (c2sp.org/tlog-witness): parse the request body, check the
// log's signature, the old size and the consistency proof against what it cosigned, then cosign.
import type { KeyObject } from 'node:crypto';
import { cosignatureLine } from './cosignature.ts';
import { verifyConsistency } from './merkleTree.ts';
import { noteSignedBy, parseCheckpointNote } from './signedNote.ts';
import type { WitnessState } from './witnessState.ts';

/** A log this witness follows: its origin, the key that signs its checkpoints, who may submit. */
export interface WitnessedLogConfig {
  origin: string;
  publicKey: KeyObject;
  /** `cn:<CN>` or `sha256:<hex>` of the client certificates allowed to submit for it. */
  clients: readonly string[];
}

export interface WitnessIdentity {
  name: string;
  privateKey: KeyObject;
}

export interface AddCheckpointAnswer {
  status: 200 | 400 | 403 | 404 | 409 | 422;
  body: string;
  contentType: string;
  /** Set when the checkpoint was cosigned: the state to persist before answering. */
  accepted?: { origin: string; size: number; root: string; note: string; time: number };
  /** Set when the checkpoint contradicts what was witnessed (a rewrite or rollback): log and count it. */
  refusal?: { origin: string; reason: string };
}

const text = (status: AddCheckpointAnswer['status'], body: string, extra: Partial<AddCheckpointAnswer> = {}): AddCheckpointAnswer => ({ status, body: body.endsWith('\n') ? body : `${body}\n`, contentType: 'text/plain; charset=utf-8', ...extra });

/** `old <n>\n`, up to 63 base64 hash lines, an empty line, then the checkpoint note. */
function parseRequest(body: string): { ok: true; old: number; proof: Buffer[]; note: string } | { ok: false; message: string } {
  const cut = body.indexOf('\n\n');
  if (cut < 0) return { ok: false, message: 'expected "old <size>", proof lines, an empty line, then the checkpoint' };
  const [first, ...proofLines] = body.slice(0, cut).split('\n');
  const old = /^old (0|[1-9][0-9]*)$/.exec(first ?? '');
  if (!old || !Number.isSafeInteger(Number(old[1]))) return { ok: false, message: 'the first line must be "old <size>"' };
  if (proofLines.length > 63) return { ok: false, message: 'more than 63 consistency proof lines' };
  const proof = proofLines.map((l) => Buffer.from(l, 'base64'));
  if (proof.some((h, i) => h.length !== 32 || h.toString('base64') !== proofLines[i])) return { ok: false, message: 'a consistency proof line is not a base64 SHA-256 hash' };
  return { ok: true, old: Number(old[1]), proof, note: body.slice(cut + 2) };
}

/**
 * Decides one add-checkpoint request from the client `clientIds` (its `cn:` and `sha256:` names).
 * Pure: the caller persists `accepted` before sending the answer, in the same event-loop turn.
 */
export function addCheckpoint(body: string, clientIds: readonly string[], logs: readonly WitnessedLogConfig[], state: WitnessState, witness: WitnessIdentity, now: number): AddCheckpointAnswer {
  const request = parseRequest(body);
  if (!request.ok) return text(400, request.message);
  const parsed = parseCheckpointNote(request.note);
  if (!parsed.ok) return text(400, `checkpoint: ${parsed.message}`);
  const cp = parsed.value;
  const log = logs.find((l) => l.origin === cp.origin);
  if (!log) return text(404, `unknown log origin ${cp.origin}`);
  if (!clientIds.some((id) => log.clients.includes(id))) return text(403, `this client certificate may not submit checkpoints of ${cp.origin}`);
  if (!noteSignedBy(cp.body, cp.signatures, cp.origin, log.publicKey)) return text(403, `the checkpoint is not signed by the key configured for ${cp.origin}`);
  const known = state.logs[cp.origin];
  const knownSize = known?.size ?? 0;
  const root = cp.root.toString('base64');
  if (request.old > cp.size) {
    // Asked to go back: a checkpoint smaller than the one witnessed is a rollback of the log.
    const refusal = request.old === knownSize ? { origin: cp.origin, reason: `a checkpoint of size ${cp.size} after size ${knownSize} was cosigned: the log was cut back` } : undefined;
    return text(400, `old size ${request.old} is larger than the checkpoint's size ${cp.size}`, refusal && { refusal });
  }
  if (request.old !== knownSize) return { status: 409, body: `${knownSize}\n`, contentType: 'text/x.tlog.size' };
  if (known && cp.size === known.size && root !== known.root) {
    return { status: 409, body: `${knownSize}\n`, contentType: 'text/x.tlog.size', refusal: { origin: cp.origin, reason: `a different tree of the same size ${cp.size} (root ${root}, cosigned ${known.root}): the log was rewritten` } };
  }
  if (request.old === 0 && request.proof.length > 0) return text(422, 'the consistency proof must be empty from size 0');
  if (known && !verifyConsistency(known.size, Buffer.from(known.root, 'base64'), cp.size, cp.root, request.proof)) {
    return text(422, `the checkpoint of size ${cp.size} does not extend the one cosigned at size ${known.size}`, { refusal: { origin: cp.origin, reason: `the checkpoint of size ${cp.size} (root ${root}) does not extend the cosigned size ${known.size} (root ${known.root}): the log was rewritten` } });
  }
  const cosignature = cosignatureLine(cp.body, witness.name, witness.privateKey, now);
  const note = `${request.note}${cosignature}\n`;
  return { status: 200, body: `${cosignature}\n`, contentType: 'text/plain; charset=utf-8', accepted: { origin: cp.origin, size: cp.size, root, note, time: now } };
}
