// Client certificates a hostile client might present: expired, not yet valid, wrong purpose, a key
// that does not match, forged issuers. Built with the same x509 code as the dev PKI, written as PEM files.
import { X509Certificate } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CA_COMMON_NAME, CLIENT_ORGANIZATION, type IssuingCa } from '../../../src/pki/certificates.ts';
import { loadCa } from '../../../src/pki/index.ts';
import { generateKeyPair, privateKeyToPem, randomSerial, SIGNING_ALGORITHM } from '../../../src/pki/keyFiles.ts';
import { x509, type CryptoKeyPair } from '../../../src/pki/x509.ts';

export interface CertificateVariant {
  /** PEM contents and the files that hold them. */
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
  fingerprint: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export interface LeafOptions {
  name: string;
  notBefore?: Date;
  notAfter?: Date;
  extendedKeyUsage?: x509.ExtendedKeyUsage[];
  keyUsage?: x509.KeyUsageFlags;
  /** A subject other than `CN=name,O=gatehouse dev`. */
  subject?: x509.JsonName;
  isCa?: boolean;
}

async function leaf(issuer: IssuingCa, keys: CryptoKeyPair, opts: LeafOptions): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: opts.subject ?? [{ O: [CLIENT_ORGANIZATION] }, { CN: [opts.name] }],
    issuer: issuer.certificate.subjectName,
    publicKey: keys.publicKey,
    signingKey: issuer.signingKey,
    notBefore: opts.notBefore ?? new Date(Date.now() - 5 * 60_000),
    notAfter: opts.notAfter ?? new Date(Date.now() + DAY_MS),
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(opts.isCa ?? false, undefined, true),
      new x509.KeyUsagesExtension(opts.keyUsage ?? x509.KeyUsageFlags.digitalSignature | (opts.isCa ? x509.KeyUsageFlags.keyCertSign : 0), true),
      new x509.ExtendedKeyUsageExtension(opts.extendedKeyUsage ?? [x509.ExtendedKeyUsage.clientAuth], false),
    ],
  });
}

async function save(dir: string, name: string, cert: x509.X509Certificate, keys: CryptoKeyPair): Promise<CertificateVariant> {
  await mkdir(dir, { recursive: true });
  const pem = cert.toString('pem');
  const keyPem = privateKeyToPem(keys.privateKey);
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await writeFile(certPath, pem);
  await writeFile(keyPath, keyPem, { mode: 0o600 });
  const fingerprint = 'sha256:' + new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
  return { cert: pem, key: keyPem, certPath, keyPath, fingerprint };
}

/** Makes client certificate variants signed by (or pretending to be) the CA in `caDir`, into `outDir`. */
export async function certificateVariants(caDir: string, outDir: string) {
  const ca = await loadCa(caDir);
  /** A leaf signed by the real CA with the given options. */
  const signed = async (file: string, opts: LeafOptions) => {
    const keys = await generateKeyPair();
    return save(outDir, file, await leaf(ca, keys, opts), keys);
  };
  /** A self-signed CA certificate with the real CA's subject but another key. */
  const impostorCa = async (): Promise<IssuingCa> => {
    const keys = await generateKeyPair();
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ CN: [CA_COMMON_NAME] }],
      keys,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + DAY_MS),
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
    });
    return { certificate, signingKey: keys.privateKey };
  };
  return {
    signed,
    expired: () => signed('expired', { name: 'alice', notBefore: new Date(Date.now() - 3 * DAY_MS), notAfter: new Date(Date.now() - DAY_MS) }),
    notYetValid: () => signed('not-yet-valid', { name: 'alice', notBefore: new Date(Date.now() + DAY_MS), notAfter: new Date(Date.now() + 3 * DAY_MS) }),
    serverAuthOnly: () => signed('server-purpose', { name: 'alice', extendedKeyUsage: [x509.ExtendedKeyUsage.serverAuth] }),
    noDigitalSignature: () => signed('no-digital-signature', { name: 'alice', keyUsage: x509.KeyUsageFlags.keyEncipherment }),
    /** A good certificate with the private key of another one: only a hand-written client can present it. */
    async mismatchedKey() {
      const good = await signed('mismatched', { name: 'alice' });
      const other = await generateKeyPair();
      return { ...good, key: privateKeyToPem(other.privateKey) };
    },
    /** Self-signed, CN and issuer equal to the real CA's, clientAuth: a forged trust anchor. */
    async selfSignedAsCa() {
      const keys = await generateKeyPair();
      const cert = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: randomSerial(),
        name: [{ CN: [CA_COMMON_NAME] }],
        keys,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + DAY_MS),
        signingAlgorithm: SIGNING_ALGORITHM,
        extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false)],
      });
      return save(outDir, 'self-signed-as-ca', cert, keys);
    },
    /** A leaf signed by an impostor CA whose subject equals the real CA's. */
    async issuedByImpostorCa() {
      const keys = await generateKeyPair();
      return save(outDir, 'impostor-issued', await leaf(await impostorCa(), keys, { name: 'alice' }), keys);
    },
    /** A leaf signed by another leaf (CA:FALSE) that the real CA issued; the chain is sent with it. */
    async issuedByLeaf() {
      const middleKeys = await generateKeyPair();
      const middle = await leaf(ca, middleKeys, { name: 'middle' });
      const keys = await generateKeyPair();
      const cert = await leaf({ certificate: middle, signingKey: middleKeys.privateKey }, keys, { name: 'alice' });
      const saved = await save(outDir, 'leaf-issued', cert, keys);
      const chain = `${saved.cert.trimEnd()}\n${middle.toString('pem').trimEnd()}\n`;
      await writeFile(saved.certPath, chain);
      return { ...saved, cert: chain };
    },
  };
}
