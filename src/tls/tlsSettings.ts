// The TLS settings a listener serves with: the secure-context options read from the certificate files,
// the protocol floor, and whether every client certificate must be refused for now.
import type { SecureContextOptions } from 'node:tls';

export interface TlsSettings extends SecureContextOptions {
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** Set when every client certificate must be refused (fail closed: the client CRL cannot be used); says why. */
  refuseClients?: string;
}
