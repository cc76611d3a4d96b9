// C2SP tlog-cosignature (cosignature/v1, Ed25519): a witness's timestamped signature over a
// checkpoint body, its key ID (type byte 0x04) and verifier key, as the witness and verifiers use them.
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rawPublicKey, type NoteSignature } from './signedNote.ts';

const COSIGNATURE_TYPE = 0x04;

/** SHA-256(name || "\n" || 0x04 || 32-byte public key)[:4]. */
export function cosignatureKeyId(name: string, publicKey: KeyObject): Buffer {
  return createHash('sha256').update(name, 'utf8').update(Buffer.from([0x0a, COSIGNATURE_TYPE])).update(rawPublicKey(publicKey)).digest().subarray(0, 4);
}

/** The signed message: `cosignature/v1\ntime <t>\n` followed by the whole checkpoint body. */
export function cosignedMessage(body: string, time: number): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${time}\n${body}`, 'utf8');
}

/** One cosignature line without its LF: `— name base64(key ID || u64 BE time || signature)`. */
export function cosignatureLine(body: string, name: string, privateKey: KeyObject, time: number): string {
  const stamp = Buffer.alloc(8);
  stamp.writeBigUInt64BE(BigInt(time));
  const sig = sign(null, cosignedMessage(body, time), privateKey);
  return `\u2014 ${name} ${Buffer.concat([cosignatureKeyId(name, privateKey), stamp, sig]).toString('base64')}`;
}

/** A witness as a verifier knows it: its name and public key. */
export interface WitnessKey {
  name: string;
  publicKey: KeyObject;
}

/** The vkey (c2sp.org/signed-note): `name+hex(key ID)+base64(0x04 || public key)`. */
export function witnessVerifierKey(name: string, publicKey: KeyObject): string {
  return `${name}+${cosignatureKeyId(name, publicKey).toString('hex')}+${Buffer.concat([Buffer.from([COSIGNATURE_TYPE]), rawPublicKey(publicKey)]).toString('base64')}`;
}

/** Parses a vkey (or a file holding one); its key ID must match its name and key. */
export function parseWitnessVerifierKey(text: string): { ok: true; value: WitnessKey } | { ok: false; message: string } {
  let vkey = text.trim();
  if (!/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/.test(vkey)) {
    try {
      vkey = readFileSync(vkey, 'utf8').trim();
    } catch {
      return { ok: false, message: `${JSON.stringify(text.slice(0, 80))} is neither a witness verifier key (name+keyid+key) nor a file holding one` };
    }
  }
  const m = /^([^\s+]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey);
  const raw = m ? Buffer.from(m[3] as string, 'base64') : Buffer.alloc(0);
  if (!m || raw.length !== 33 || raw[0] !== COSIGNATURE_TYPE) return { ok: false, message: 'not a cosignature/v1 Ed25519 verifier key (name+keyid+base64(0x04 || key))' };
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.subarray(1).toString('base64url') }, format: 'jwk' });
  const name = m[1] as string;
  if (cosignatureKeyId(name, publicKey).toString('hex') !== m[2]) return { ok: false, message: `verifier key of ${name}: the key ID does not match the name and key` };
  return { ok: true, value: { name, publicKey } };
}

/** The time of the first cosignature by `witness` over `body` that verifies; undefined when none does. */
export function cosignedBy(body: string, signatures: readonly NoteSignature[], witness: WitnessKey): number | undefined {
  const keyId = cosignatureKeyId(witness.name, witness.publicKey);
  for (const s of signatures) {
    if (s.name !== witness.name || !s.keyHash.equals(keyId) || s.signature.length !== 8 + 64) continue;
    const time = s.signature.readBigUInt64BE(0);
    if (time >= 2n ** 63n) continue;
    if (verify(null, cosignedMessage(body, Number(time)), witness.publicKey, s.signature.subarray(8))) return Number(time);
  }
  return undefined;
}
