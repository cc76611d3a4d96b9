// `gatehouse login --certificate`, the user's side: an ECDSA P-256 key made here (never sent; on disk, mode 0600,
// only once the login succeeded), its CSR sent with the device start, and the certificate the gateway answered
// with, kept beside the token file, where tunnel and publish find it when no --cert/--key is given.
import { X509Certificate, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Where a certificate login's certificate and key live: beside the token file, named after it. */
export interface LoginCertificateFiles {
  cert: string;
  key: string;
}

export function loginCertificateFiles(tokenFile: string): LoginCertificateFiles {
  return { cert: `${tokenFile}.crt`, key: `${tokenFile}.key` };
}

/** The certificate and key of an earlier certificate login, when both are there (tunnel and publish use them by default). */
export function storedLoginCertificate(tokenFile: string): LoginCertificateFiles | undefined {
  const files = loginCertificateFiles(tokenFile);
  return existsSync(files.cert) && existsSync(files.key) ? files : undefined;
}

export interface CertificateRequest {
  /** PKCS#8 PEM of the private key: kept in memory until the certificate comes back. */
  keyPem: string;
  /** PEM of the CSR the device start sends. The gateway names the certificate after the IdP login, not this subject. */
  csr: string;
}

/** One DER element: tag, definite length, contents. */
function der(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, body]);
}

/** id-at-commonName and ecdsa-with-SHA256, DER-encoded object identifiers. */
const COMMON_NAME = Buffer.from('0603550403', 'hex');
const ECDSA_WITH_SHA256 = Buffer.from('06082a8648ce3d040302', 'hex');

/**
 * A P-256 key and its PKCS#10 request (RFC 2986), written here with node:crypto alone: the client bundle carries
 * no X.509 library. The request is signed by the key it carries, which is what the gateway checks.
 */
export function certificateRequest(): CertificateRequest {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const subject = der(0x30, der(0x31, der(0x30, COMMON_NAME, der(0x0c, Buffer.from('gatehouse login')))));
  const info = der(0x30, der(0x02, Buffer.from([0])), subject, publicKey.export({ type: 'spki', format: 'der' }), der(0xa0));
  const signature = sign('sha256', info, privateKey);
  const request = der(0x30, info, der(0x30, ECDSA_WITH_SHA256), der(0x03, Buffer.from([0]), signature));
  const csr = `-----BEGIN CERTIFICATE REQUEST-----\n${request.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE REQUEST-----\n`;
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), csr };
}

/** Writes through a temporary file and a rename, created with its final mode: no reader sees half a key, nor a wider mode. */
async function writeAtomic(path: string, contents: string, mode: number): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await rm(temporary, { force: true });
  await writeFile(temporary, contents, { mode, flag: 'wx' });
  await rename(temporary, path);
}

/**
 * Writes the key (0600) and the certificate the gateway issued beside `tokenFile`, after checking that the
 * certificate is for this key; returns the files and when the certificate ends, or why it cannot be used.
 */
export async function saveLoginCertificate(tokenFile: string, request: CertificateRequest, certificatePem: string): Promise<{ ok: true; files: LoginCertificateFiles; notAfter: string } | { ok: false; reason: string }> {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certificatePem);
  } catch {
    return { ok: false, reason: 'the gateway answered with something that is not a certificate' };
  }
  if (!certificate.checkPrivateKey(createPrivateKey(request.keyPem))) return { ok: false, reason: 'the certificate the gateway answered with is not for the key made here' };
  const files = loginCertificateFiles(tokenFile);
  // Key first: an interrupted write leaves no certificate without its key.
  await writeAtomic(files.key, request.keyPem, 0o600);
  await writeAtomic(files.cert, certificatePem.endsWith('\n') ? certificatePem : `${certificatePem}\n`, 0o644);
  return { ok: true, files, notAfter: new Date(certificate.validTo).toISOString() };
}
