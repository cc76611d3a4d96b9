// Client certificates for `gatehouse pki client NAME`: CN=NAME, O=gatehouse dev, optional email
// SAN, clientAuth only, signed by the development CA made by `gatehouse pki init`.
import { X509Certificate } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PkiError } from './errors.ts';
import { fileExists, generateKeyPair, writeCertificateFile, writePrivateKeyFile } from './keyFiles.ts';
import { createClientCertificate } from './certificates.ts';
import { CA_CERT_FILE, checkDays, loadCa } from './devCa.ts';
import type { CryptoKey, x509 } from './x509.ts';

export const CLIENTS_DIR = 'clients';
import { DEFAULT_CLIENT_DAYS } from './defaults.ts';
export { DEFAULT_CLIENT_DAYS };

/** Names become file names and common names: a conservative alphabet and at most 64 characters. */
const CLIENT_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const EMAIL = /^[^\s@<>(),;:"\\]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/;

export interface IssueClientOptions {
  /** The PKI directory that holds ca.crt and ca.key. */
  dir: string;
  name: string;
  email?: string;
  /** Validity in days (default 365). */
  days?: number;
  /** Directory for NAME.crt and NAME.key (default `<dir>/clients`). */
  out?: string;
  /** Replace an existing certificate of the same name. */
  force?: boolean;
}

export interface IssuedClientCertificate {
  /** Path of the client certificate (PEM). */
  cert: string;
  /** Path of the client private key (PKCS#8 PEM, mode 0600). */
  key: string;
  /** Path of the CA certificate that signed it. */
  caCert: string;
  /** Serial number, lowercase hex, as in the client_serial fact. */
  serial: string;
  /** `sha256:<lowercase hex>` of the DER certificate, as in the client_fingerprint fact. */
  fingerprint: string;
  notAfter: Date;
}

export function isValidClientName(name: string): boolean {
  return CLIENT_NAME.test(name) && name !== '.' && name !== '..';
}

export async function issueClientCertificate(opts: IssueClientOptions): Promise<IssuedClientCertificate> {
  if (!isValidClientName(opts.name)) {
    throw new PkiError('invalid-name', `invalid client name "${opts.name}": use 1 to 64 of A-Z a-z 0-9 . _ -`);
  }
  if (opts.email !== undefined && !EMAIL.test(opts.email)) {
    throw new PkiError('invalid-email', `invalid email address "${opts.email}"`);
  }
  const days = checkDays(opts.days, DEFAULT_CLIENT_DAYS);
  const ca = await loadCa(opts.dir);

  return writeLeaf(opts.dir, opts.out ?? join(opts.dir, CLIENTS_DIR), opts.name, opts.force ?? false, (publicKey) => createClientCertificate(ca, publicKey, opts.name, opts.email, days));
}

/**
 * Writes NAME.crt and NAME.key into `outDir` (never over existing ones unless `force`): a new key pair, and the
 * certificate `make` issues for its public key. Returns the paths and what the policies see of it.
 */
export async function writeLeaf(dir: string, outDir: string, name: string, force: boolean, make: (publicKey: CryptoKey) => Promise<x509.X509Certificate>): Promise<IssuedClientCertificate> {
  const certPath = join(outDir, `${name}.crt`);
  const keyPath = join(outDir, `${name}.key`);
  if (!force) {
    for (const path of [certPath, keyPath]) {
      if (await fileExists(path)) {
        throw new PkiError('exists', `${path} already exists: pick another name or replace it with --force`, path);
      }
    }
  }
  await mkdir(outDir, { recursive: true, mode: 0o700 });

  const keys = await generateKeyPair();
  const certificate = await make(keys.publicKey);
  const pem = certificate.toString('pem');
  await writePrivateKeyFile(keyPath, keys.privateKey);
  await writeCertificateFile(certPath, pem);

  const parsed = new X509Certificate(pem);
  return {
    cert: certPath,
    key: keyPath,
    caCert: join(dir, CA_CERT_FILE),
    serial: parsed.serialNumber.toLowerCase(),
    fingerprint: 'sha256:' + parsed.fingerprint256.replace(/:/g, '').toLowerCase(),
    notAfter: new Date(parsed.validTo),
  };
}
