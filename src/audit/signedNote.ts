// C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and the checkpoint body they carry
// (c2sp.org/tlog-checkpoint): origin line, tree size, base64 root hash. Go's sumdb/note reads the same.
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/** The raw 32-byte Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  return Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
}

/** Key hash (key ID): the first 4 bytes of SHA-256(name || 0x0A || 0x01 || 32-byte public key). */
export function noteKeyHash(name: string, publicKey: KeyObject): Buffer {
  return createHash('sha256').update(name, 'utf8').update(Buffer.from([0x0a, 0x01])).update(rawPublicKey(publicKey)).digest().subarray(0, 4);
}

/** The verifier key string of Go's sumdb/note: `name+hex(key hash)+base64(0x01 || public key)`. */
export function verifierKey(name: string, publicKey: KeyObject): string {
  return `${name}+${noteKeyHash(name, publicKey).toString('hex')}+${Buffer.concat([Buffer.from([0x01]), rawPublicKey(publicKey)]).toString('base64')}`;
}

/** One signature line, without its LF: `— name base64(key hash || signature)`. */
export function signatureLine(body: string, name: string, privateKey: KeyObject): string {
  const sig = sign(null, Buffer.from(body, 'utf8'), privateKey);
  return `\u2014 ${name} ${Buffer.concat([noteKeyHash(name, privateKey), sig]).toString('base64')}`;
}

export interface NoteSignature {
  name: string;
  keyHash: Buffer;
  signature: Buffer;
}

export type ParsedNote = { ok: true; body: string; signatures: NoteSignature[] } | { ok: false; message: string };

/** Splits a note into its body (ending in LF) and its signature lines. */
export function parseNote(text: string): ParsedNote {
  const cut = text.lastIndexOf('\n\n');
  if (cut < 0 || !text.endsWith('\n')) return { ok: false, message: 'not a signed note (no blank line before the signatures, or no final newline)' };
  const body = text.slice(0, cut + 1);
  const signatures: NoteSignature[] = [];
  const lines = text.slice(cut + 2, -1);
  for (const line of lines === '' ? [] : lines.split('\n')) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    const raw = m ? Buffer.from(m[2] as string, 'base64') : undefined;
    if (!m || !raw || raw.length < 5) return { ok: false, message: `not a signature line: ${JSON.stringify(line.slice(0, 80))}` };
    signatures.push({ name: m[1] as string, keyHash: raw.subarray(0, 4), signature: raw.subarray(4) });
  }
  return { ok: true, body, signatures };
}

/** Does one of the note's signatures verify with (name, publicKey)? */
export function noteSignedBy(body: string, signatures: readonly NoteSignature[], name: string, publicKey: KeyObject): boolean {
  const keyHash = noteKeyHash(name, publicKey);
  return signatures.some((s) => s.name === name && s.keyHash.equals(keyHash) && verify(null, Buffer.from(body, 'utf8'), publicKey, s.signature));
}

export interface CheckpointBody {
  origin: string;
  size: number;
  root: Buffer;
}

/** The checkpoint body: `<origin>\n<size>\n<base64 root>\n`. */
export function checkpointBody(origin: string, size: number, root: Buffer): string {
  return `${origin}\n${size}\n${root.toString('base64')}\n`;
}

export function parseCheckpointBody(body: string): { ok: true; value: CheckpointBody } | { ok: false; message: string } {
  const lines = body.split('\n');
  const [origin, size, root] = lines;
  if (lines.length < 4 || !origin || !size || !root) return { ok: false, message: 'a checkpoint body is origin, size and root hash, one per line' };
  if (!/^(0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) return { ok: false, message: `tree size ${JSON.stringify(size)} is not a decimal number` };
  const hash = Buffer.from(root, 'base64');
  if (hash.length !== 32 || hash.toString('base64') !== root) return { ok: false, message: 'root hash is not 32 bytes of standard base64' };
  return { ok: true, value: { origin, size: Number(size), root: hash } };
}

/** A whole checkpoint note: body + signatures, parsed. */
export function parseCheckpointNote(text: string): { ok: true; value: CheckpointBody & { body: string; signatures: NoteSignature[] } } | { ok: false; message: string } {
  const note = parseNote(text);
  if (!note.ok) return note;
  const body = parseCheckpointBody(note.body);
  if (!body.ok) return body;
  return { ok: true, value: { ...body.value, body: note.body, signatures: note.signatures } };
}
