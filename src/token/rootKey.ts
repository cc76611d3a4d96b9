// Reads the root public key that every token must be signed by, from the `ed25519/<hex>` text
// that `gatehouse token keygen` writes (biscuit-wasm itself only parses the bare hex).
import { readFile } from 'node:fs/promises';
import { PublicKey, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import { biscuitErrorText } from './biscuitErrors.ts';

export type KeyResult = { ok: true; key: PublicKey } | { ok: false; reason: string };

const algorithms: Record<string, SignatureAlgorithm> = {
  ed25519: SignatureAlgorithm.Ed25519,
  secp256r1: SignatureAlgorithm.Secp256r1,
};

/** Parses `ed25519/<hex>` or `secp256r1/<hex>`; `what` names the key in the error. */
export function parsePublicKey(text: string, what: string): KeyResult {
  const value = text.trim();
  const match = /^([a-z0-9]+)\/([0-9a-fA-F]+)$/.exec(value);
  if (!match) {
    const hint = value.includes('-private/') ? ' (this is a private key; give the public key)' : '';
    return { ok: false, reason: `${what}: expected "ed25519/<hex>"${hint}` };
  }
  const [, prefix = '', hex = ''] = match;
  const algorithm = algorithms[prefix];
  if (algorithm === undefined) return { ok: false, reason: `${what}: unknown key algorithm "${prefix}" (expected ed25519 or secp256r1)` };
  try {
    return { ok: true, key: PublicKey.fromString(hex.toLowerCase(), algorithm) };
  } catch (error) {
    return { ok: false, reason: `${what}: not a valid ${prefix} public key: ${biscuitErrorText(error)}` };
  }
}

export async function readRootKey(file: string): Promise<KeyResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return { ok: false, reason: `root key ${file}: cannot read (${code})` };
  }
  return parsePublicKey(text, `root key ${file}`);
}
