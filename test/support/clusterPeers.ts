// Instances of a cluster for tests: an instance certificate from the test CA (the role is a URI name
// `gatehouse-instance:<name>`, serverAuth + clientAuth), made with openssl as a site's own CA would.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestPki } from './pki.ts';

export interface InstanceCertificate {
  certPath: string;
  keyPath: string;
}

/** Issues `name`'s certificate into `dir`; `uris` replaces the role names (a test of a certificate without, or with two). */
export function instanceCertificate(pki: TestPki, dir: string, name: string, uris: string[] = [`gatehouse-instance:${name}`]): InstanceCertificate {
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  const certPath = join(dir, `${name}.crt`);
  const extPath = join(dir, `${name}.ext`);
  const sans = [...uris.map((u) => `URI:${u}`), 'IP:127.0.0.1'].join(',');
  writeFileSync(extPath, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${sans}\n`);
  execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyPath, '-subj', `/O=gatehouse dev/CN=${name}`, '-out', csrPath], { stdio: 'ignore' });
  execFileSync('openssl', ['x509', '-req', '-in', csrPath, '-CA', pki.caCertPath, '-CAkey', join(pki.dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', extPath, '-out', certPath], { stdio: 'ignore' });
  return { certPath, keyPath };
}
