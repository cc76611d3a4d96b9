// Root key files for tokens: `ed25519-private/<hex>` (mode 0600) and `ed25519/<hex>`, one line each.
// Reading returns biscuit key objects or a typed error naming the file; writing never clobbers silently.
import fs from 'node:fs';
import path from 'node:path';
import type { PrivateKey, PublicKey } from '@biscuit-auth/biscuit-wasm';
import { biscuit, biscuitErrorText } from './biscuitModule.ts';
import { fail, ok, type TokenResult } from './tokenErrors.ts';

export interface RootKeyStrings {
  /** `ed25519-private/<hex>` */
  privateKey: string;
  /** `ed25519/<hex>` */
  publicKey: string;
}

const algorithms: Record<string, number> = {
  ed25519: biscuit.SignatureAlgorithm.Ed25519,
  secp256r1: biscuit.SignatureAlgorithm.Secp256r1,
};

export function generateRootKey(): RootKeyStrings {
  const pair = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);
  try {
    return { privateKey: pair.getPrivateKey().toString(), publicKey: pair.getPublicKey().toString() };
  } finally {
    pair.free();
  }
}

/**
 * Writes `text` to `target` through a private temporary file in the same folder, so the target
 * never exists half-written or with a wider mode. Without `force`, an existing target is kept.
 */
function writeKeyFile(target: string, text: string, mode: number, force: boolean): TokenResult<void> {
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const fd = fs.openSync(temporary, 'wx', 0o600);
    try {
      fs.writeSync(fd, text);
      fs.fchmodSync(fd, mode);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (force) fs.renameSync(temporary, target);
    else fs.linkSync(temporary, target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && !force) return fail('exists', `${target} already exists (use --force to replace it)`, { file: target });
    return fail('unwritable', `cannot write ${target}: ${(error as Error).message}`, { file: target });
  } finally {
    fs.rmSync(temporary, { force: true });
  }
  return ok(undefined);
}

/** Generates a root key pair and writes it: private key mode 0600, public key mode 0644. */
export function writeKeyPair(
  privatePath: string,
  publicPath: string,
  options: { force?: boolean } = {},
): TokenResult<RootKeyStrings> {
  const force = options.force ?? false;
  if (!force) {
    for (const file of [privatePath, publicPath]) {
      if (fs.existsSync(file)) return fail('exists', `${file} already exists (use --force to replace it)`, { file });
    }
  }
  const keys = generateRootKey();
  const written = writeKeyFile(privatePath, `${keys.privateKey}\n`, 0o600, force);
  if (!written.ok) return written;
  const writtenPublic = writeKeyFile(publicPath, `${keys.publicKey}\n`, 0o644, force);
  if (!writtenPublic.ok) return writtenPublic;
  return ok(keys);
}

/**
 * Generates a delegation key pair and writes its private key (mode 0600, never clobbered without
 * `force`); the public key goes into the token it makes delegable.
 */
export function writeDelegationKey(file: string, options: { force?: boolean } = {}): TokenResult<RootKeyStrings> {
  const keys = generateRootKey();
  const written = writeKeyFile(file, `${keys.privateKey}\n`, 0o600, options.force ?? false);
  return written.ok ? ok(keys) : written;
}

function readKeyText(file: string): TokenResult<string> {
  try {
    return ok(fs.readFileSync(file, 'utf8').trim());
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return fail('missing', `key file ${file} does not exist`, { file });
    return fail('unreadable', `cannot read key file ${file}: ${(error as Error).message}`, { file });
  }
}

/** Parses `ed25519/<hex>` (or `secp256r1/<hex>`); `source` names where the text came from. */
export function parsePublicKey(text: string, source = 'public key'): TokenResult<PublicKey> {
  const match = /^(ed25519|secp256r1)\/([0-9a-fA-F]+)$/.exec(text.trim());
  const algorithm = match ? algorithms[match[1] ?? ''] : undefined;
  if (!match || algorithm === undefined) {
    return fail('malformed', `${source} is not a public key: expected ed25519/<hex>`);
  }
  try {
    return ok(biscuit.PublicKey.fromString(match[2] ?? '', algorithm));
  } catch (error) {
    return fail('malformed', `${source} is not a valid public key: ${biscuitErrorText(error)}`);
  }
}

export function readPublicKey(file: string): TokenResult<PublicKey> {
  const text = readKeyText(file);
  if (!text.ok) return text;
  const key = parsePublicKey(text.value, `key file ${file}`);
  return key.ok ? key : fail(key.error.kind, key.error.message, { file });
}

export function readPrivateKey(file: string): TokenResult<PrivateKey> {
  const text = readKeyText(file);
  if (!text.ok) return text;
  if (!/^(ed25519|secp256r1)-private\/[0-9a-fA-F]+$/.test(text.value)) {
    return fail('malformed', `key file ${file} is not a private key: expected ed25519-private/<hex>`, { file });
  }
  try {
    return ok(biscuit.PrivateKey.fromString(text.value));
  } catch (error) {
    return fail('malformed', `key file ${file} is not a valid private key: ${biscuitErrorText(error)}`, { file });
  }
}

/** A warning when a private key file can be read by group or others, else undefined. */
export function privateKeyModeWarning(file: string): string | undefined {
  try {
    const mode = fs.statSync(file).mode & 0o777;
    if (mode & 0o077) return `warning: ${file} is readable by others (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it`;
  } catch {
    // The read that follows reports the problem.
  }
  return undefined;
}
