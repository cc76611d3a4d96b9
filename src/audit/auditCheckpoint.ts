// Signed checkpoints of the audit chain: the audit signing key (ed25519, PEM files of its own), the
// exact bytes a checkpoint signs, signing and verifying. node:crypto only; openssl reads the same keys.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, verify, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { AuditCheckpoint } from './auditRecord.ts';
import { signatureLine } from './signedNote.ts';

export type AuditKeyError = { code: 'key-unreadable' | 'key-not-ed25519' | 'key-exists'; message: string };
export type AuditKeyResult<T> = { ok: true; value: T } | { ok: false; error: AuditKeyError };

/**
 * The bytes a version 1 checkpoint signed (UTF-8; logs written before the Merkle tree; verify still
 * reads them): a domain label, then the sequence number and hash of the last
 * record it covers and the checkpoint's own time, one per line. Anyone can rebuild them from the record.
 */
export function checkpointMessage(seq: number, hash: string, time: string): Buffer {
  return Buffer.from(`gatehouse audit checkpoint v1\n${seq}\n${hash}\n${time}\n`, 'utf8');
}

/** Key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key. */
export function auditKeyId(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  return createHash('sha256').update(Buffer.from(jwk.x ?? '', 'base64url')).digest('hex').slice(0, 16);
}

export interface AuditSigner {
  keyId: string;
  publicKey: KeyObject;
  /** The signed-note signature line over `body` under the key name `name` (the log's origin). */
  signatureLine(body: string, name: string): string;
}

function keyFailure(code: AuditKeyError['code'], message: string): { ok: false; error: AuditKeyError } {
  return { ok: false, error: { code, message } };
}

/** Reads the private signing key (PKCS#8 PEM, as `gatehouse audit keygen` writes it). */
export function readAuditSigner(file: string): AuditKeyResult<AuditSigner> {
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(file));
  } catch (err) {
    return keyFailure('key-unreadable', `audit signing key ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') return keyFailure('key-not-ed25519', `audit signing key ${file}: expected an ed25519 key, found ${key.asymmetricKeyType ?? 'unknown'}`);
  const publicKey = createPublicKey(key);
  const keyId = auditKeyId(publicKey);
  return {
    ok: true,
    value: { keyId, publicKey, signatureLine: (body, name) => signatureLine(body, name, key) },
  };
}

/** Reads a public key (SPKI PEM); a private key file is accepted too (its public half is used). */
export function readAuditPublicKey(file: string): AuditKeyResult<KeyObject> {
  let key: KeyObject;
  try {
    key = createPublicKey(readFileSync(file));
  } catch (err) {
    return keyFailure('key-unreadable', `audit public key ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') return keyFailure('key-not-ed25519', `audit public key ${file}: expected an ed25519 key, found ${key.asymmetricKeyType ?? 'unknown'}`);
  return { ok: true, value: key };
}

export type CheckpointCheck = { ok: true } | { ok: false; code: 'unsigned' | 'other-key' | 'bad-signature'; message: string };

/** Checks a version 1 checkpoint's signature against `publicKey`; `time` is the checkpoint record's own time. */
export function verifyCheckpoint(cp: AuditCheckpoint, time: string, publicKey: KeyObject, keyId: string): CheckpointCheck {
  if (!cp.sig) return { ok: false, code: 'unsigned', message: 'checkpoint carries no signature (no audit.signingKey configured?)' };
  const good = verify(null, checkpointMessage(cp.seq, cp.hash, time), publicKey, Buffer.from(cp.sig, 'base64'));
  if (good) return { ok: true };
  if (cp.key !== keyId) return { ok: false, code: 'other-key', message: `signed by key ${cp.key ?? '(none named)'}, not by the given key ${keyId}` };
  return { ok: false, code: 'bad-signature', message: `signature does not verify with key ${keyId}: the checkpoint was altered` };
}

/** Writes `<base>.key` (0600) and `<base>.pub`; refuses to overwrite unless `force`. */
export function writeAuditKeyPair(base: string, force: boolean): AuditKeyResult<{ privateFile: string; publicFile: string; keyId: string }> {
  const privateFile = `${base}.key`;
  const publicFile = `${base}.pub`;
  if (!force) {
    for (const f of [privateFile, publicFile]) if (existsSync(f)) return keyFailure('key-exists', `${f} exists (use --force to replace it)`);
  }
  const pair = generateKeyPairSync('ed25519');
  try {
    const temporary = `${privateFile}.${process.pid}.tmp`;
    writeFileSync(temporary, pair.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    renameSync(temporary, privateFile);
    writeFileSync(publicFile, pair.publicKey.export({ format: 'pem', type: 'spki' }), { mode: 0o644 });
  } catch (err) {
    return keyFailure('key-unreadable', `cannot write the key pair at ${base}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { ok: true, value: { privateFile, publicFile, keyId: auditKeyId(pair.publicKey) } };
}

/** For `gatehouse demo`: creates the key pair `keyFile` names (`<base>.key`) if it does not exist yet. */
export function ensureAuditSigningKey(keyFile: string): AuditKeyResult<{ created: boolean; keyId?: string }> {
  if (existsSync(keyFile)) return { ok: true, value: { created: false } };
  const written = writeAuditKeyPair(keyFile.replace(/\.key$/, ''), false);
  return written.ok ? { ok: true, value: { created: true, keyId: written.value.keyId } } : written;
}
