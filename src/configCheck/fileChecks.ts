// Checks the files routes.yaml points at: TLS certificate, key, client CA and CRL, the token root key,
// the revocation list and the audit signing key must exist, be readable and hold what the gateway expects;
// what it writes must be writable.
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { PublicKey, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import type { ConfigIssue, KeyPath } from '../config/configError.ts';
import { writablePathChecks } from '../config/writablePaths.ts';
import { readTicketKeyFile } from '../tls/ticketKeys.ts';
import { biscuitErrorText } from '../token/biscuitErrors.ts';

type Raw = Record<string, unknown>;

function record(value: unknown): Raw | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Raw) : undefined;
}

const reasons: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent is not a directory',
};

/** Reads the file named at `key`, or records why it cannot. */
async function readAt(key: KeyPath, value: unknown, dir: string, issues: ConfigIssue[], why = ''): Promise<Buffer | undefined> {
  if (typeof value !== 'string' || value === '') return undefined; // the schema reports it
  const file = path.resolve(dir, value);
  try {
    return await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    issues.push({ path: key, message: `cannot read ${file}: ${reasons[code] ?? (error as Error).message}${why}` });
    return undefined;
  }
}

const pemCertificate = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

function parseCertificate(pem: string, key: KeyPath, issues: ConfigIssue[]): X509Certificate | undefined {
  try {
    const cert = new X509Certificate(pem);
    if (new Date(cert.validTo).getTime() < Date.now()) {
      issues.push({ path: key, message: `certificate ${cert.subject.replace(/\n/g, ', ')} expired on ${cert.validTo}` });
    }
    return cert;
  } catch (error) {
    issues.push({ path: key, message: `not a valid PEM certificate: ${(error as Error).message}` });
    return undefined;
  }
}

/** The file's mode as four octal digits when every local user may read it; undefined otherwise. */
function everyoneReads(file: string): string | undefined {
  try {
    const mode = statSync(file).mode & 0o777;
    return mode & 0o004 ? mode.toString(8).padStart(4, '0') : undefined;
  } catch {
    return undefined;
  }
}

async function checkTls(tls: Raw, dir: string, issues: ConfigIssue[]): Promise<void> {
  const [certPem, keyPem, caPem] = await Promise.all([
    readAt(['tls', 'cert'], tls.cert, dir, issues),
    readAt(['tls', 'key'], tls.key, dir, issues),
    readAt(['tls', 'clientCa'], tls.clientCa, dir, issues),
  ]);
  const cert = certPem && parseCertificate(certPem.toString('utf8'), ['tls', 'cert'], issues);
  let key: KeyObject | undefined;
  const keyMode = keyPem && everyoneReads(path.resolve(dir, String(tls.key)));
  if (keyMode) {
    // Group read stays allowed: Debian's ssl-cert group (mode 0640) is how sites share a key with a service.
    issues.push({ path: ['tls', 'key'], message: `the server's private key can be read by every user (mode ${keyMode}); chmod o-r it` });
  }
  if (keyPem) {
    try {
      key = createPrivateKey(keyPem);
    } catch (error) {
      const message = (error as Error).message;
      const encrypted = /passphrase/i.test(message) ? ' (the gateway needs an unencrypted key; protect it with file permissions)' : '';
      issues.push({ path: ['tls', 'key'], message: `not a valid PEM private key: ${message}${encrypted}` });
    }
  }
  if (cert && key && !cert.checkPrivateKey(key)) {
    issues.push({ path: ['tls', 'key'], message: 'this private key does not belong to the certificate in tls.cert' });
  }
  if (caPem) {
    const blocks = caPem.toString('utf8').match(pemCertificate) ?? [];
    if (blocks.length === 0) issues.push({ path: ['tls', 'clientCa'], message: 'no PEM certificate (BEGIN CERTIFICATE) in the file' });
    for (const block of blocks) parseCertificate(block, ['tls', 'clientCa'], issues);
  }
  if (typeof tls.crl === 'string' && tls.crl !== '' && caPem) {
    // Loaded only when a CRL is configured: it brings the X.509 library.
    const { loadCrlFile } = await import('../tls/clientCrl.ts');
    const loaded = await loadCrlFile(path.resolve(dir, tls.crl), caPem.toString('latin1'));
    if (!loaded.ok) issues.push({ path: ['tls', 'crl'], message: loaded.reason });
  }
  if (typeof tls.ticketKeys === 'string' && tls.ticketKeys !== '') {
    const read = readTicketKeyFile(path.resolve(dir, tls.ticketKeys));
    if (!read.ok) issues.push({ path: ['tls', 'ticketKeys'], message: read.reason });
  }
}

function checkRootKey(content: string, issues: ConfigIssue[]): void {
  const where = ['authz', 'rootKey'];
  const text = content.trim();
  if (text.includes('-private/')) {
    issues.push({ path: where, message: 'this file holds a PRIVATE key; authz.rootKey must be the public key (ed25519/<hex>)' });
    return;
  }
  const match = /^ed25519\/([0-9a-fA-F]{64})$/.exec(text);
  if (!match?.[1]) {
    issues.push({ path: where, message: 'expected ed25519/<64 hex digits> (the public key from "gatehouse token keygen")' });
    return;
  }
  try {
    PublicKey.fromString(match[1], SignatureAlgorithm.Ed25519).free();
  } catch (error) {
    issues.push({ path: where, message: `not a valid Ed25519 public key: ${biscuitErrorText(error)}` });
  }
}

function checkRevocationList(content: string, file: string, issues: ConfigIssue[]): void {
  content.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (!/^[0-9a-fA-F]+$/.test(line) || line.length % 2 !== 0) {
      issues.push({
        path: ['authz', 'revocationList'],
        message: 'expected one revocation id (hex) per line; comments go on their own line starting with "#"',
        at: { file, line: index + 1, column: raw.length - raw.trimStart().length + 1 },
      });
    }
  });
}

/** The audit signing key must be readable by the user running this (the gateway's user) and be ed25519. */
async function checkAuditSigningKey(audit: Raw, dir: string, issues: ConfigIssue[]): Promise<void> {
  const key = await readAt(['audit', 'signingKey'], audit.signingKey, dir, issues, ': the gateway would not start');
  if (!key) return;
  try {
    const type = createPrivateKey(key).asymmetricKeyType;
    if (type !== 'ed25519') issues.push({ path: ['audit', 'signingKey'], message: `expected an ed25519 private key (gatehouse audit keygen), found ${type ?? 'unknown'}` });
  } catch (error) {
    issues.push({ path: ['audit', 'signingKey'], message: `not a PEM private key: ${(error as Error).message}` });
  }
}

/** Each witness: its verifier key parses (key ID matches), and its CA and client certificate files are readable. */
async function checkWitnesses(audit: Raw, dir: string, issues: ConfigIssue[]): Promise<void> {
  if (!Array.isArray(audit.witnesses)) return;
  const { parseWitnessVerifierKey } = await import('../audit/cosignature.ts');
  for (const [index, raw] of audit.witnesses.entries()) {
    const w = record(raw);
    if (!w) continue;
    if (typeof w.vkey === 'string') {
      const vkey = parseWitnessVerifierKey(w.vkey);
      if (!vkey.ok) issues.push({ path: ['audit', 'witnesses', index, 'vkey'], message: vkey.message });
    }
    for (const file of ['ca', 'cert', 'key'] as const) await readAt(['audit', 'witnesses', index, file], w[file], dir, issues, ': checkpoints would not reach this witness');
  }
}

/** Problems with the files named in the raw document; `configFile` is the config file as the user named it. */
export async function fileChecks(data: unknown, configFile: string): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const root = record(data);
  if (!root) return issues;
  const dir = path.dirname(path.resolve(configFile));
  const tls = record(root.tls);
  const authz = record(root.authz);
  const tlsDone = tls ? checkTls(tls, dir, issues) : Promise.resolve();
  if (authz) {
    const rootKey = await readAt(['authz', 'rootKey'], authz.rootKey, dir, issues);
    if (rootKey) checkRootKey(rootKey.toString('utf8'), issues);
    const why = ': the gateway would deny every request';
    const revoked = await readAt(['authz', 'revocationList'], authz.revocationList, dir, issues, why);
    if (revoked && typeof authz.revocationList === 'string') {
      const shown = path.isAbsolute(authz.revocationList) ? authz.revocationList : path.join(path.dirname(configFile), authz.revocationList);
      checkRevocationList(revoked.toString('utf8'), shown, issues);
    }
  }
  const audit = record(root.audit);
  if (audit) await checkAuditSigningKey(audit, dir, issues);
  if (audit) await checkWitnesses(audit, dir, issues);
  issues.push(...writablePathChecks(root, dir));
  await tlsDone;
  return issues;
}
