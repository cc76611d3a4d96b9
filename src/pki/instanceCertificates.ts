// Cluster instance certificates for `gatehouse pki instance NAME`: the role `gatehouse-instance:NAME` as a URI
// name, the instance's peer host names and addresses, serverAuth and clientAuth, signed by the site's CA.
import { join } from 'node:path';
import { INSTANCE_NAME } from '../tls/instanceRole.ts';
import { createInstanceCertificate } from './certificates.ts';
import { writeLeaf, type IssuedClientCertificate } from './clientCertificates.ts';
import { DEFAULT_CLIENT_DAYS } from './defaults.ts';
import { checkDays, hostNames, loadCa } from './devCa.ts';
import { PkiError } from './errors.ts';

export const INSTANCES_DIR = 'instances';

export interface IssueInstanceOptions {
  /** The PKI directory that holds ca.crt and ca.key. */
  dir: string;
  /** The instance's name, as cluster.instance says it. */
  name: string;
  /** The names and addresses the other instances dial its peer port at (its cluster.peerListen). */
  hosts: readonly string[];
  /** Validity in days (default 365). */
  days?: number;
  /** Directory for NAME.crt and NAME.key (default `<dir>/instances`). */
  out?: string;
  /** Replace an existing certificate of the same name. */
  force?: boolean;
}

export interface IssuedInstanceCertificate extends IssuedClientCertificate {
  /** The DNS and IP names it carries. */
  hosts: string[];
}

export async function issueInstanceCertificate(opts: IssueInstanceOptions): Promise<IssuedInstanceCertificate> {
  if (!INSTANCE_NAME.test(opts.name)) {
    throw new PkiError('invalid-name', `invalid instance name "${opts.name}": use 1 to 63 of A-Z a-z 0-9 . _ -, starting with a letter or digit`);
  }
  const hosts = hostNames(opts.hosts);
  const days = checkDays(opts.days, DEFAULT_CLIENT_DAYS);
  const ca = await loadCa(opts.dir);
  const issued = await writeLeaf(opts.dir, opts.out ?? join(opts.dir, INSTANCES_DIR), opts.name, opts.force ?? false, (publicKey) => createInstanceCertificate(ca, publicKey, opts.name, hosts, days));
  return { ...issued, hosts };
}
