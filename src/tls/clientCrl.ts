// Client-certificate revocation lists (`tls.crl`): reads one file of one or more CRLs (PEM or DER),
// checks each is signed by a client CA, and watches the file so a new list applies without a restart.
import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { x509 } from '../pki/x509.ts';

export interface CrlSummary {
  issuer: string;
  /** When the issuer promises the next list; past it OpenSSL refuses every certificate of that CA. */
  nextUpdate?: Date;
  revoked: number;
}

export interface CrlSnapshot {
  file: string;
  /** PEM text of each CRL, as Node's `crl` secure-context option takes it. */
  pem: string[];
  lists: CrlSummary[];
  /** The earliest nextUpdate of the lists: the whole file is due by then. */
  nextUpdate?: Date;
  /**
   * Whether a certificate is on one of the lists: its issuer's list names its serial. The handshake
   * checks new connections; this is for the ones opened before the list changed.
   */
  isRevoked(certificate: CertificateRef): boolean;
}

/** What `isRevoked` reads of a certificate (Node's X509Certificate has both). */
export interface CertificateRef {
  /** DER. */
  raw: Uint8Array;
  /** Hex, any case, leading zeros or not. */
  serialNumber: string;
}

export type CrlLoad = { ok: true; snapshot: CrlSnapshot } | { ok: false; code: 'unreadable' | 'invalid' | 'unsigned'; reason: string };

/** OpenSSL writes "X509 CRL" (and reads only that); some libraries write "CRL". */
const PEM_BLOCK = /-----BEGIN (X509 )?CRL-----[\s\S]+?-----END (X509 )?CRL-----/g;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function opensslPem(der: ArrayBuffer): string {
  const base64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN X509 CRL-----\n${base64.replace(/\n$/, '')}\n-----END X509 CRL-----\n`;
}

function serialKey(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

/** `isRevoked` of a snapshot: revoked serials (lowercase hex, no leading zeros) by issuer name. */
function revokedBy(revokedSerials: ReadonlyMap<string, ReadonlySet<string>>): (certificate: CertificateRef) => boolean {
  const anyIssuer = new Set([...revokedSerials.values()].flatMap((serials) => [...serials]));
  return (certificate) => {
    // Runs for every open connection at each reload: the serial alone clears almost all of them unparsed.
    const serial = serialKey(certificate.serialNumber);
    if (!anyIssuer.has(serial)) return false;
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(certificate.raw);
    } catch {
      // A certificate the handshake accepted but this library cannot read: it cannot be cleared either.
      return true;
    }
    return revokedSerials.get(cert.issuer)?.has(serial) ?? false;
  };
}

/** Reads `file` and checks every CRL in it against the client CA bundle (PEM text). */
export async function loadCrlFile(file: string, clientCaPem: string): Promise<CrlLoad> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    return { ok: false, code: 'unreadable', reason: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})` };
  }
  const text = bytes.toString('latin1');
  const blocks = text.includes('-----BEGIN') ? (text.match(PEM_BLOCK) ?? []) : [];
  let crls: x509.X509Crl[];
  try {
    crls = blocks.length > 0 ? blocks.map((b) => new x509.X509Crl(b)) : text.includes('-----BEGIN') ? [] : [new x509.X509Crl(bytes)];
  } catch (err) {
    return { ok: false, code: 'invalid', reason: `${file}: not a CRL in PEM or DER (${err instanceof Error ? err.message : String(err)})` };
  }
  if (crls.length === 0) return { ok: false, code: 'invalid', reason: `${file}: no "BEGIN X509 CRL" block` };
  // A list no client CA signed would make OpenSSL refuse every certificate with a vague error: say so here.
  const cas = (clientCaPem.match(PEM_CERT) ?? []).map((pem) => new x509.X509Certificate(pem));
  for (const crl of crls) {
    const issuers = cas.filter((ca) => ca.subject === crl.issuer);
    let signed = false;
    for (const ca of issuers) {
      if (await crl.verify({ publicKey: ca.publicKey }).catch(() => false)) signed = true;
    }
    if (!signed) return { ok: false, code: 'unsigned', reason: `${file}: the CRL of "${crl.issuer}" is not signed by any certificate in tls.clientCa` };
  }
  const revokedSerials = new Map<string, Set<string>>();
  for (const crl of crls) {
    const serials = revokedSerials.get(crl.issuer) ?? new Set<string>();
    for (const entry of crl.entries) serials.add(serialKey(entry.serialNumber));
    revokedSerials.set(crl.issuer, serials);
  }
  const lists = crls.map((crl) => ({ issuer: crl.issuer, ...(crl.nextUpdate && { nextUpdate: crl.nextUpdate }), revoked: crl.entries.length }));
  const nextUpdate = lists.reduce<Date | undefined>((min, l) => (l.nextUpdate && (!min || l.nextUpdate < min) ? l.nextUpdate : min), undefined);
  return { ok: true, snapshot: { file, pem: crls.map((crl) => opensslPem(crl.rawData)), lists, ...(nextUpdate && { nextUpdate }), isRevoked: revokedBy(revokedSerials) } };
}

/**
 * Calls `onChange` when `file` changes (its size, mtime or inode). Polling, not fs.watch: a list is
 * usually replaced by rename, which an inotify watch on the old inode would miss.
 */
export function watchCrlFile(file: string, onChange: () => void, intervalMs = 1000): () => void {
  const listener = (now: Stats, before: Stats) => {
    if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino) onChange();
  };
  watchFile(file, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(file, listener);
}
