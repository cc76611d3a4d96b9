// Short-lived client certificates from a certificate signing request (issuer.certificates): the CSR is
// checked (self-signature, key type) and only its public key is used; the holder's name comes from the login.
import { createPublicKey, X509Certificate } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { loadCaFiles } from './devCa.ts';
import { PkiError } from './errors.ts';
import { x509 } from './x509.ts';
import type { IssuingCa } from './certificates.ts';
import { SIGNING_ALGORITHM, randomSerial } from './keyFiles.ts';

/** A CSR larger than this is not a CSR a client of ours made (a P-256 one is ~0.5 KB, RSA 4096 ~1.7 KB). */
export const MAX_CSR_BYTES = 8192;
/** Certificates start this far in the past so a relying party whose clock is slightly behind accepts them. */
export const CERTIFICATE_BACKDATE_MS = 5 * 60 * 1000;
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 8192;

export type CsrRefusalCode = 'csr-unreadable' | 'csr-signature' | 'csr-key-type';

export type CsrRefusal = { ok: false; code: CsrRefusalCode; clientReason: string; reason: string };

/** A CSR whose self-signature holds: its public key and what kind of key it is (for the record). */
export interface CheckedCsr {
  publicKey: x509.PublicKey;
  /** `ec P-256`, `ed25519` or `rsa <bits>`. */
  keyKind: string;
  /** The subject the CSR asked for: recorded, never used. */
  askedSubject: string;
}

const refused = (code: CsrRefusalCode, clientReason: string, reason: string): CsrRefusal => ({ ok: false, code, clientReason, reason });

/** What kind of key `spki` (DER) is, or why it is not one we certify. */
function keyKindOf(spki: ArrayBuffer): { ok: true; kind: string } | { ok: false; reason: string } {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ed25519') return { ok: true, kind: 'ed25519' };
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve === 'prime256v1') return { ok: true, kind: 'ec P-256' };
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details?.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS) return { ok: true, kind: `rsa ${bits}` };
    return { ok: false, reason: `an RSA key of ${bits} bits (${MIN_RSA_BITS} to ${MAX_RSA_BITS} are taken)` };
  }
  return { ok: false, reason: `a key of type ${key.asymmetricKeyType ?? 'unknown'}${details?.namedCurve ? ` ${details.namedCurve}` : ''}` };
}

/**
 * Reads and checks a PEM CSR: one PKCS#10 request, signed by the key it carries (proof that the client
 * holds the private key), an EC P-256, Ed25519 or RSA >= 2048 key. Nothing else of it is trusted.
 */
export async function checkCsr(pem: unknown): Promise<{ ok: true; csr: CheckedCsr } | CsrRefusal> {
  if (typeof pem !== 'string' || pem.length === 0) return refused('csr-unreadable', 'csr must be a PEM certificate request', `csr is ${typeof pem}`);
  if (Buffer.byteLength(pem) > MAX_CSR_BYTES) return refused('csr-unreadable', 'csr too large', `csr of ${Buffer.byteLength(pem)} bytes (at most ${MAX_CSR_BYTES})`);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    return refused('csr-unreadable', 'csr must be a PEM certificate request', `csr does not parse: ${err instanceof Error ? err.message : String(err)}`);
  }
  let kind: ReturnType<typeof keyKindOf>;
  try {
    kind = keyKindOf(csr.publicKey.rawData);
  } catch (err) {
    return refused('csr-key-type', 'csr key must be EC P-256, Ed25519 or RSA of at least 2048 bits', `csr public key unreadable: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!kind.ok) return refused('csr-key-type', 'csr key must be EC P-256, Ed25519 or RSA of at least 2048 bits', `csr carries ${kind.reason}`);
  let signed = false;
  try {
    signed = await csr.verify();
  } catch (err) {
    return refused('csr-signature', 'csr signature does not verify', `csr signature cannot be checked: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!signed) return refused('csr-signature', 'csr signature does not verify', `csr signature does not verify with its own ${kind.kind} key`);
  return { ok: true, csr: { publicKey: csr.publicKey, keyKind: kind.kind, askedSubject: csr.subject } };
}

/** Who the certificate names, from the login (never from the CSR), and until when it holds. */
export interface CertificateHolder {
  /** The user name the claim rules gave: the certificate's CN. */
  user: string;
  /** An email subject alternative name (when the site binds logins to `email`). */
  email?: string;
  notAfter: Date;
  now: Date;
}

export interface IssuedFromCsr {
  pem: string;
  /** Lowercase hex, as in the client_serial fact. */
  serial: string;
  /** `sha256:<hex>` of the DER certificate, as in the client_fingerprint fact. */
  fingerprint: string;
  notBefore: Date;
  notAfter: Date;
}

/**
 * Signs a client certificate for `holder` over the CSR's public key: CN (and email SAN) from the login,
 * clientAuth only, not a CA, a random serial, valid from a little before now until `holder.notAfter`.
 */
export async function issueFromCsr(ca: IssuingCa, csr: CheckedCsr, holder: CertificateHolder): Promise<IssuedFromCsr> {
  const notBefore = new Date(holder.now.getTime() - CERTIFICATE_BACKDATE_MS);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
    await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.certificate.publicKey),
  ];
  if (holder.email !== undefined) extensions.push(new x509.SubjectAlternativeNameExtension([{ type: 'email', value: holder.email }], false));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [holder.user] }],
    issuer: ca.certificate.subjectName,
    publicKey: csr.publicKey,
    signingKey: ca.signingKey,
    notBefore,
    notAfter: holder.notAfter,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  const pem = certificate.toString('pem');
  const parsed = new X509Certificate(pem);
  return {
    pem: pem.endsWith('\n') ? pem : `${pem}\n`,
    serial: parsed.serialNumber.toLowerCase().replace(/^(00)+(?=.)/, ''),
    fingerprint: 'sha256:' + parsed.fingerprint256.replace(/:/g, '').toLowerCase(),
    notBefore,
    notAfter: new Date(parsed.validTo),
  };
}

/**
 * The issuing CA of issuer.certificates: its key file must be the issuer's alone (no group or other bits,
 * like ssh's private keys), then both are checked as the development CA's are (a CA, not expired, ECDSA P-256).
 */
export async function loadIssuingCa(certPath: string, keyPath: string): Promise<IssuingCa> {
  let mode: number;
  try {
    mode = (await stat(keyPath)).mode & 0o777;
  } catch (err) {
    throw new PkiError('ca-missing', `cannot read ${keyPath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, keyPath);
  }
  if ((mode & 0o077) !== 0) throw new PkiError('ca-invalid', `${keyPath} is readable by others (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 it`, keyPath);
  return loadCaFiles(certPath, keyPath);
}
