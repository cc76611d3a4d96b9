// The kinds of certificate the development CA makes (CA, server, client, cluster instance) and their
// extensions. Pure construction: no files; devCa.ts decides what to write where.
import { isIP } from 'node:net';
import { x509 } from './x509.ts';
import type { CryptoKey, CryptoKeyPair } from './x509.ts';
import { SIGNING_ALGORITHM, randomSerial } from './keyFiles.ts';
import { INSTANCE_URI_PREFIX } from '../tls/instanceRole.ts';

export const CA_COMMON_NAME = 'gatehouse dev CA';
export const SERVER_COMMON_NAME = 'gatehouse';
export const CLIENT_ORGANIZATION = 'gatehouse dev';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates start a few minutes in the past so a peer whose clock is slightly behind accepts them. */
const BACKDATE_MS = 5 * 60 * 1000;

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + days * DAY_MS) };
}

export interface IssuingCa {
  certificate: x509.X509Certificate;
  signingKey: CryptoKey;
}

export async function createCaCertificate(keys: CryptoKeyPair, days: number): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [CA_COMMON_NAME] }],
    keys,
    ...validity(days),
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
}

interface LeafParams {
  ca: IssuingCa;
  publicKey: CryptoKey;
  subject: x509.JsonName;
  days: number;
  extendedKeyUsage: x509.ExtendedKeyUsage[];
  altNames: x509.JsonGeneralNames;
}

async function createLeafCertificate(params: LeafParams): Promise<x509.X509Certificate> {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(params.extendedKeyUsage, false),
    await x509.SubjectKeyIdentifierExtension.create(params.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(params.ca.certificate.publicKey),
  ];
  if (params.altNames.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(params.altNames, false));
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: params.subject,
    issuer: params.ca.certificate.subjectName,
    publicKey: params.publicKey,
    signingKey: params.ca.signingKey,
    ...validity(params.days),
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
}

/** Subject alternative names for the server: IP literals as IP names, everything else as DNS names. */
export function serverAltNames(names: readonly string[]): x509.JsonGeneralNames {
  return names.map((name) => ({ type: isIP(name) ? 'ip' : 'dns', value: name }));
}

export function createServerCertificate(
  ca: IssuingCa,
  publicKey: CryptoKey,
  names: readonly string[],
  days: number,
): Promise<x509.X509Certificate> {
  return createLeafCertificate({
    ca,
    publicKey,
    subject: [{ CN: [SERVER_COMMON_NAME] }],
    days,
    extendedKeyUsage: [x509.ExtendedKeyUsage.serverAuth],
    altNames: serverAltNames(names),
  });
}

export function createClientCertificate(
  ca: IssuingCa,
  publicKey: CryptoKey,
  name: string,
  email: string | undefined,
  days: number,
): Promise<x509.X509Certificate> {
  return createLeafCertificate({
    ca,
    publicKey,
    // Most significant attribute first in the encoding, so the DN reads `CN=name,O=gatehouse dev`.
    subject: [{ O: [CLIENT_ORGANIZATION] }, { CN: [name] }],
    days,
    extendedKeyUsage: [x509.ExtendedKeyUsage.clientAuth],
    altNames: email === undefined ? [] : [{ type: 'email', value: email }],
  });
}

/**
 * A cluster instance's certificate (cluster.peerCert): its role as the URI name `gatehouse-instance:NAME`, and
 * both usages, since each instance dials the others (client) and takes their relays (server) on its peer port.
 */
export function createInstanceCertificate(ca: IssuingCa, publicKey: CryptoKey, name: string, hosts: readonly string[], days: number): Promise<x509.X509Certificate> {
  return createLeafCertificate({
    ca,
    publicKey,
    subject: [{ O: [CLIENT_ORGANIZATION] }, { CN: [name] }],
    days,
    extendedKeyUsage: [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
    altNames: [{ type: 'url', value: `${INSTANCE_URI_PREFIX}${name}` }, ...serverAltNames(hosts)],
  });
}
