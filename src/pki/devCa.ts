// The development PKI behind `gatehouse pki init`: a CA and a server certificate in one
// directory, made once and then reused. Real sites bring their own CA.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { PkiError } from './errors.ts';
import { fileExists, generateKeyPair, signingKeyFromPem, writeCertificateFile, writePrivateKeyFile } from './keyFiles.ts';
import { createCaCertificate, createServerCertificate } from './certificates.ts';
import type { IssuingCa } from './certificates.ts';
import { x509 } from './x509.ts';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';
export const SERVER_CERT_FILE = 'server.crt';
export const SERVER_KEY_FILE = 'server.key';

/** The CA lives ten years, or longer if the server certificate is asked to. */
const CA_MIN_DAYS = 3650;
/** The longest server certificate lifetime Apple platforms accept, even from a private CA. */
import { DEFAULT_SERVER_DAYS } from './defaults.ts';
export { DEFAULT_SERVER_DAYS };
const MAX_DAYS = 36500;

const DNS_NAME = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export type PkiFileStatus = 'created' | 'kept' | 'replaced';

export interface PkiFileReport {
  /** File name inside the PKI directory, e.g. `ca.crt`. */
  file: string;
  path: string;
  status: PkiFileStatus;
  /** Why an existing file was replaced. */
  reason?: string;
}

export interface PkiInitResult {
  dir: string;
  /** ca.crt, ca.key, server.crt, server.key, in that order. */
  files: PkiFileReport[];
  /** False when everything was in place and nothing was written. */
  changed: boolean;
  /** True when a new CA was made: client certificates of an earlier CA no longer work. */
  caCreated: boolean;
  /**
   * Names of the server certificate: localhost, the requested names, 127.0.0.1 and ::1, plus the
   * names of a server certificate it replaced because one was missing (force starts afresh).
   */
  serverNames: string[];
}

export interface InitPkiOptions {
  dir: string;
  /** Host names or IP literals for the server certificate (default ['localhost']). */
  serverNames?: string[];
  /** Replace the CA and the server certificate even if they exist. */
  force?: boolean;
  /** Validity of the server certificate in days (default 825). */
  days?: number;
}

export function checkDays(days: number | undefined, fallback: number): number {
  const value = days ?? fallback;
  if (!Number.isInteger(value) || value < 1 || value > MAX_DAYS) {
    throw new PkiError('invalid-days', `invalid validity "${String(days)}": expected whole days from 1 to ${MAX_DAYS}`);
  }
  return value;
}

/** DNS names and IP addresses for a certificate, lower-cased and in one spelling each; a bad one is refused. */
export function hostNames(requested: readonly string[]): string[] {
  const names = requested.map(canonicalName);
  for (const name of names) {
    if (!isIP(name) && !(DNS_NAME.test(name) && name.length <= 253)) {
      throw new PkiError('invalid-server-name', `invalid server name "${name}": expected a DNS name or an IP address`);
    }
  }
  return [...new Set(names)];
}

/** localhost and the requested names, lower-cased, then 127.0.0.1 and ::1; no repeats. */
function serverNameList(requested: readonly string[] | undefined): string[] {
  return [...new Set([...hostNames(['localhost', ...(requested ?? [])]), '127.0.0.1', '::1'])];
}

/** The CA in `dir`, checked: a CA certificate, not expired, with its ECDSA P-256 key. */
export async function loadCa(dir: string): Promise<IssuingCa> {
  const certPath = join(dir, CA_CERT_FILE);
  const keyPath = join(dir, CA_KEY_FILE);
  for (const path of [certPath, keyPath]) {
    if (!(await fileExists(path))) {
      throw new PkiError('ca-missing', `no CA in ${dir} (${path} is missing): run \`gatehouse pki init\` first`, path);
    }
  }
  return loadCaFiles(certPath, keyPath);
}

/** A CA from its certificate and key files, checked as loadCa checks them. */
export async function loadCaFiles(certPath: string, keyPath: string): Promise<IssuingCa> {
  const read = (path: string) => readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new PkiError('ca-missing', `cannot read ${path}: ${err.code ?? err.message}`, path);
  });
  const [certPem, keyPem] = await Promise.all([read(certPath), read(keyPath)]);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    throw new PkiError('ca-invalid', `${certPath} is not a PEM certificate`, certPath);
  }
  if (!cert.ca) throw new PkiError('ca-invalid', `${certPath} is not a CA certificate`, certPath);
  if (Date.parse(cert.validTo) <= Date.now()) {
    throw new PkiError('ca-invalid', `${certPath} expired on ${cert.validTo}: make a new CA with \`gatehouse pki init --force\``, certPath);
  }
  let signingKey: Awaited<ReturnType<typeof signingKeyFromPem>>;
  try {
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new PkiError('ca-invalid', `${keyPath} is not the key of ${certPath}`, keyPath);
    }
    signingKey = await signingKeyFromPem(keyPem);
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError('ca-invalid', `${keyPath} is not a PEM private key`, keyPath);
  }
  if (!signingKey) throw new PkiError('ca-invalid', `${keyPath} is not an ECDSA P-256 key`, keyPath);
  return { certificate: new x509.X509Certificate(certPem), signingKey };
}

/** IP literals in one spelling (`::1`, not `0:0:0:0:0:0:0:1`), so names compare and dedupe. */
function canonicalName(name: string): string {
  const lower = name.trim().toLowerCase();
  return isIP(lower) === 6 ? new URL(`http://[${lower}]/`).hostname.slice(1, -1) : lower;
}

interface ExistingServerCertificate {
  /** Why it cannot be kept, or undefined when it can. */
  problem: string | undefined;
  /** The DNS and IP names it carries, so a reissue for a new name keeps the old ones. */
  names: string[];
}

async function inspectServerCertificate(dir: string, ca: IssuingCa, wanted: readonly string[]): Promise<ExistingServerCertificate> {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(await readFile(join(dir, SERVER_CERT_FILE)));
    if (!cert.checkPrivateKey(createPrivateKey(await readFile(join(dir, SERVER_KEY_FILE))))) {
      return { problem: `${SERVER_KEY_FILE} is not the key of ${SERVER_CERT_FILE}`, names: [] };
    }
  } catch {
    return { problem: `${SERVER_CERT_FILE} or ${SERVER_KEY_FILE} could not be read as PEM`, names: [] };
  }
  const names = (new x509.X509Certificate(cert.raw).getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [])
    .filter((n) => n.type === 'dns' || n.type === 'ip')
    .map((n) => canonicalName(n.value));
  if (!cert.verify(new X509Certificate(ca.certificate.toString('pem')).publicKey)) {
    return { problem: `${SERVER_CERT_FILE} was not signed by ${CA_CERT_FILE}`, names };
  }
  if (Date.parse(cert.validTo) <= Date.now()) return { problem: `${SERVER_CERT_FILE} expired on ${cert.validTo}`, names };
  const missing = wanted.filter((n) => !names.includes(n));
  if (missing.length > 0) return { problem: `${SERVER_CERT_FILE} did not name ${missing.join(', ')}`, names };
  return { problem: undefined, names };
}

async function createCa(dir: string, days: number): Promise<IssuingCa> {
  const keys = await generateKeyPair();
  const certificate = await createCaCertificate(keys, days);
  // Key first: an interrupted run leaves no certificate without its key.
  await writePrivateKeyFile(join(dir, CA_KEY_FILE), keys.privateKey);
  await writeCertificateFile(join(dir, CA_CERT_FILE), certificate.toString('pem'));
  return { certificate, signingKey: keys.privateKey };
}

async function createServer(dir: string, ca: IssuingCa, names: readonly string[], days: number): Promise<void> {
  const keys = await generateKeyPair();
  const certificate = await createServerCertificate(ca, keys.publicKey, names, days);
  await writePrivateKeyFile(join(dir, SERVER_KEY_FILE), keys.privateKey);
  await writeCertificateFile(join(dir, SERVER_CERT_FILE), certificate.toString('pem'));
}

/**
 * Makes what is missing in `dir`: the CA (kept if both ca.crt and ca.key exist, unless `force`)
 * and the server certificate (kept while it is valid, signed by the CA and names every requested
 * name; reissued with its old names plus the new ones otherwise).
 * A second call with the same options writes nothing and reports every file as kept.
 */
export async function initPki(opts: InitPkiOptions): Promise<PkiInitResult> {
  const { dir } = opts;
  const serverDays = checkDays(opts.days, DEFAULT_SERVER_DAYS);
  const names = serverNameList(opts.serverNames);
  await mkdir(dir, { recursive: true });

  const path = (file: string): string => join(dir, file);
  const [caCertExists, caKeyExists, serverCertExists, serverKeyExists] = await Promise.all(
    [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE].map((f) => fileExists(path(f))),
  );
  if (!opts.force && caCertExists !== caKeyExists) {
    const [present, absent] = caCertExists ? [CA_CERT_FILE, CA_KEY_FILE] : [CA_KEY_FILE, CA_CERT_FILE];
    throw new PkiError(
      'ca-incomplete',
      `${path(absent)} is missing but ${path(present)} exists: restore it, or make a new CA with \`gatehouse pki init --force\``,
      path(absent),
    );
  }

  const files: PkiFileReport[] = [];
  let ca: IssuingCa;
  const caCreated = Boolean(opts.force) || !caCertExists;
  if (caCreated) {
    ca = await createCa(dir, Math.max(CA_MIN_DAYS, serverDays));
    for (const [file, existed] of [[CA_CERT_FILE, caCertExists], [CA_KEY_FILE, caKeyExists]] as const) {
      files.push(existed ? { file, path: path(file), status: 'replaced', reason: 'forced' } : { file, path: path(file), status: 'created' });
    }
  } else {
    ca = await loadCa(dir);
    files.push({ file: CA_CERT_FILE, path: path(CA_CERT_FILE), status: 'kept' }, { file: CA_KEY_FILE, path: path(CA_KEY_FILE), status: 'kept' });
  }

  let reason: string | undefined;
  let serverNames = names;
  if (serverCertExists && serverKeyExists && caCreated) {
    reason = 'new CA';
  } else if (serverCertExists && serverKeyExists) {
    const existing = await inspectServerCertificate(dir, ca, names);
    reason = existing.problem;
    const loopback = ['127.0.0.1', '::1'];
    serverNames = [...new Set([...names, ...existing.names].filter((n) => !loopback.includes(n))), ...loopback];
  } else if (serverCertExists || serverKeyExists) {
    reason = `${serverCertExists ? SERVER_KEY_FILE : SERVER_CERT_FILE} was missing`;
  }
  const serverExisted = serverCertExists || serverKeyExists;
  if (serverExisted && reason === undefined) {
    files.push({ file: SERVER_CERT_FILE, path: path(SERVER_CERT_FILE), status: 'kept' }, { file: SERVER_KEY_FILE, path: path(SERVER_KEY_FILE), status: 'kept' });
  } else {
    await createServer(dir, ca, serverNames, serverDays);
    for (const [file, existed] of [[SERVER_CERT_FILE, serverCertExists], [SERVER_KEY_FILE, serverKeyExists]] as const) {
      files.push(existed ? { file, path: path(file), status: 'replaced', reason: reason ?? 'replaced' } : { file, path: path(file), status: 'created' });
    }
  }

  return { dir, files, changed: files.some((f) => f.status !== 'kept'), caCreated, serverNames };
}
