// The client certificate's identity, read once per TLS connection and carried with it through
// routing, authorization, forwarding and audit. Nothing downstream re-parses the certificate.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

export interface SubjectAltName {
  /** `dns`, `email`, `uri` or `ip`. */
  kind: string;
  value: string;
}

export interface PeerIdentity {
  /** Subject common name (empty string when the certificate has none). */
  cn: string;
  /** Subject distinguished name, RFC 4514 order with `,` separators, e.g. `CN=alice,O=Site`. */
  subject: string;
  issuer: string;
  /** Serial number, lowercase hex without separators. */
  serial: string;
  /** `sha256:<lowercase hex>` of the DER certificate. */
  fingerprint: string;
  sans: SubjectAltName[];
  notAfter: string;
}

/** Node prints DNs one attribute per line, most significant first; join them the RFC 4514 way. */
function distinguishedName(multiline: string): string {
  return multiline
    .split('\n')
    .filter((line) => line.length > 0)
    .reverse()
    .map((line) => line.replace(/([,+"\\<>;])/g, '\\$1'))
    .join(',');
}

function commonName(multiline: string): string {
  const line = multiline.split('\n').find((l) => l.startsWith('CN='));
  return line ? line.slice(3) : '';
}

function subjectAltNames(text: string | undefined): SubjectAltName[] {
  if (!text) return [];
  const kinds: Record<string, string> = { DNS: 'dns', email: 'email', URI: 'uri', 'IP Address': 'ip' };
  const names: SubjectAltName[] = [];
  for (const part of text.split(', ')) {
    const colon = part.indexOf(':');
    if (colon < 0) continue;
    const kind = kinds[part.slice(0, colon)];
    if (kind) names.push({ kind, value: part.slice(colon + 1).replace(/^"|"$/g, '') });
  }
  return names;
}

export function identityFromCertificate(cert: X509Certificate): PeerIdentity {
  return {
    cn: commonName(cert.subject),
    subject: distinguishedName(cert.subject),
    issuer: distinguishedName(cert.issuer),
    serial: cert.serialNumber.toLowerCase().replace(/^(00)+(?=.)/, ''),
    fingerprint: 'sha256:' + cert.fingerprint256.replace(/:/g, '').toLowerCase(),
    sans: subjectAltNames(cert.subjectAltName),
    notAfter: new Date(cert.validTo).toISOString(),
  };
}

export function identityFromPem(pem: string | Buffer): PeerIdentity {
  return identityFromCertificate(new X509Certificate(pem));
}

/** The verified peer's identity, or undefined when the handshake did not authenticate a client. */
export function peerIdentity(socket: TLSSocket): PeerIdentity | undefined {
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerX509Certificate();
  return cert ? identityFromCertificate(cert) : undefined;
}

/** The fingerprint prefix of a connection without a client certificate: no certificate fingerprint starts so. */
const CERTIFICATELESS = 'none:';

/**
 * What stands for the identity of a connection that presented no certificate (issuer.certificates): keyed by
 * its source address, so rate limits and record budgets apply per address. It never reaches a route.
 */
export function certificatelessIdentity(sourceIp: string): PeerIdentity {
  return { cn: '', subject: '', issuer: '', serial: '', fingerprint: `${CERTIFICATELESS}${sourceIp || 'unix'}`, sans: [], notAfter: '' };
}

/** Whether `identity` is a verified client certificate's (not a certificate-less connection's). */
export function hasCertificate(identity: PeerIdentity): boolean {
  return !identity.fingerprint.startsWith(CERTIFICATELESS);
}
