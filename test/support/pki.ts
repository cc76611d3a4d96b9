// A development PKI for tests: CA, server certificate and client certificates in a temp dir,
// made by the same code as `gatehouse pki`, with PEM contents ready for tls options.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initPki, issueClientCertificate } from '../../src/pki/index.ts';
import type { IssuedClientCertificate } from '../../src/pki/index.ts';

export interface TestClientCertificate {
  /** PEM contents. */
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
  serial: string;
  fingerprint: string;
}

export interface TestPki {
  dir: string;
  /** PEM contents of ca.crt, server.crt, server.key. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  caCertPath: string;
  serverCertPath: string;
  serverKeyPath: string;
  /** Issues (or, when the name exists, re-issues) a client certificate signed by this CA. */
  client(name: string, opts?: { email?: string; days?: number }): Promise<TestClientCertificate>;
}

async function withContents(issued: IssuedClientCertificate): Promise<TestClientCertificate> {
  return {
    cert: await readFile(issued.cert, 'utf8'),
    key: await readFile(issued.key, 'utf8'),
    certPath: issued.cert,
    keyPath: issued.key,
    serial: issued.serial,
    fingerprint: issued.fingerprint,
  };
}

export async function makeTestPki(dir: string, serverNames: string[] = []): Promise<TestPki> {
  await initPki({ dir, serverNames });
  const caCertPath = join(dir, 'ca.crt');
  const serverCertPath = join(dir, 'server.crt');
  const serverKeyPath = join(dir, 'server.key');
  return {
    dir,
    caCert: await readFile(caCertPath, 'utf8'),
    serverCert: await readFile(serverCertPath, 'utf8'),
    serverKey: await readFile(serverKeyPath, 'utf8'),
    caCertPath,
    serverCertPath,
    serverKeyPath,
    client: async (name, opts = {}) =>
      withContents(await issueClientCertificate({ dir, name, force: true, ...opts })),
  };
}
