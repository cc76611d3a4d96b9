// Client-certificate revocation lists for tests: a CRL signed by the harness CA, installed the way an
// administrator's tooling does (write aside, rename over), and `tls.crl` switched on by a config reload.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCa } from '../../src/pki/index.ts';
import { x509 } from '../../src/pki/x509.ts';
import { SIGNING_ALGORITHM } from '../../src/pki/keyFiles.ts';
import type { Harness } from './gatewayHarness.ts';

const HOUR = 3600_000;

/** A CRL signed by the harness CA revoking `serials`; PEM unless `der`. */
export async function makeCrl(h: Harness, serials: string[], opts: { nextUpdate?: Date; der?: boolean } = {}): Promise<Buffer> {
  const ca = await loadCa(h.pki.dir);
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.certificate.subject,
    signingKey: ca.signingKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    thisUpdate: new Date(Date.now() - 2 * HOUR),
    nextUpdate: opts.nextUpdate ?? new Date(Date.now() + 24 * HOUR),
    entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: new Date(Date.now() - HOUR) })),
  });
  if (opts.der) return Buffer.from(crl.rawData);
  // The label OpenSSL writes (`openssl ca -gencrl`), which is what sites have.
  return Buffer.from(crl.toString('pem').replace(/(BEGIN|END) CRL/g, '$1 X509 CRL') + '\n');
}

/** Replaces the CRL file the way an administrator's tooling would: write aside, then rename over it. */
export function installCrl(crlPath: string, bytes: Buffer): void {
  writeFileSync(`${crlPath}.new`, bytes);
  renameSync(`${crlPath}.new`, crlPath);
}

/** The path the CRL lives at in a harness: certs/clients.crl. */
export const crlPathOf = (h: Harness): string => join(h.dir, 'certs', 'clients.crl');

/** Writes an empty CRL and turns `tls.crl` on with a config reload (SIGHUP); resolves once it is applied. */
export async function enableCrl(h: Harness): Promise<void> {
  writeFileSync(crlPathOf(h), await makeCrl(h, []));
  const config = join(h.dir, 'routes.yaml');
  const reloads = h.audit().filter((r) => r.event === 'config.reload').length;
  writeFileSync(config, readFileSync(config, 'utf8').replace('  clientCa: certs/ca.crt\n', '  clientCa: certs/ca.crt\n  crl: certs/clients.crl\n'));
  h.proc.kill('SIGHUP');
  await h.waitForAudit(() => h.audit().filter((r) => r.event === 'config.reload' && r.decision === 'allow').length > reloads, 10_000);
}
