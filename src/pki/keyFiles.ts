// Key pairs and the files that hold them: ECDSA P-256 keys, PKCS#8 PEM private keys written
// atomically with mode 0600, certificates with 0644, and random positive serial numbers.
import { KeyObject, createPrivateKey, randomBytes, randomUUID } from 'node:crypto';
import { chmod, rename, rm, stat, writeFile } from 'node:fs/promises';
import { webcrypto } from './x509.ts';
import type { CryptoKey, CryptoKeyPair } from './x509.ts';

/** ECDSA over P-256 with SHA-256: the algorithm of every key and signature of the dev PKI. */
export const SIGNING_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export function generateKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(SIGNING_ALGORITHM, true, ['sign', 'verify']);
}

export function privateKeyToPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

/**
 * A signing key from PEM (PKCS#8 or SEC1), or undefined when it is not an ECDSA P-256 key.
 * Throws when the PEM cannot be parsed at all.
 */
export async function signingKeyFromPem(pem: string): Promise<CryptoKey | undefined> {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return undefined;
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, SIGNING_ALGORITHM, false, ['sign']);
}

/** 16 random bytes as lowercase hex, the top bit clear and the next set: positive, never shortened. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Writes `contents` to `path` through a temporary file and a rename, so a reader never sees half
 * a file and an existing file is replaced with the new mode rather than keeping its old one.
 */
export async function writeFileAtomic(path: string, contents: string, mode: number): Promise<void> {
  const temporary = `${path}.${randomUUID()}.tmp`;
  try {
    await writeFile(temporary, contents, { mode, flag: 'wx' });
    await chmod(temporary, mode); // the umask may have removed bits we asked for
    await rename(temporary, path);
  } catch (err) {
    await rm(temporary, { force: true });
    throw err;
  }
}

export function writePrivateKeyFile(path: string, key: CryptoKey): Promise<void> {
  return writeFileAtomic(path, privateKeyToPem(key), 0o600);
}

export function writeCertificateFile(path: string, pem: string): Promise<void> {
  return writeFileAtomic(path, pem.endsWith('\n') ? pem : pem + '\n', 0o644);
}
