// `gatehouse pki instance NAME`: a cluster instance certificate from the site CA, checked by openssl (both
// purposes), read by the peer channel as that instance's, and the command line's output and refusals.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initPki, issueInstanceCertificate, PkiError } from '../src/pki/index.ts';
import { identityFromPem } from '../src/tls/peerIdentity.ts';
import { instanceOf } from '../src/tls/instanceRole.ts';
import { runGatehouse } from './support/gatewayHarness.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pki-instance-'));
const openssl = (...args: string[]) => execFileSync('openssl', args, { encoding: 'utf8' });

beforeAll(async () => {
  await initPki({ dir });
});

describe('gatehouse pki instance', () => {
  it('issues URI gatehouse-instance:NAME with the peer hosts as DNS and IP names, for server and client use, verified by openssl', async () => {
    const issued = await issueInstanceCertificate({ dir, name: 'gw1', hosts: ['GW1.example.org', '10.0.0.11', '::1'] });
    expect(issued.cert).toBe(join(dir, 'instances', 'gw1.crt'));
    expect(statSync(issued.key).mode & 0o777).toBe(0o600);
    for (const purpose of ['sslserver', 'sslclient']) expect(openssl('verify', '-x509_strict', '-purpose', purpose, '-CAfile', join(dir, 'ca.crt'), issued.cert)).toContain(': OK');
    const text = openssl('x509', '-in', issued.cert, '-noout', '-ext', 'subjectAltName,extendedKeyUsage');
    expect(text).toContain('URI:gatehouse-instance:gw1, DNS:gw1.example.org, IP Address:10.0.0.11, IP Address:0:0:0:0:0:0:0:1');
    expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
    const identity = identityFromPem(readFileSync(issued.cert, 'utf8'));
    expect(instanceOf(identity)).toBe('gw1');
    expect(identity.cn).toBe('gw1');
  });

  it('refuses a bad name or host, and an existing certificate without --force', async () => {
    for (const name of ['', '-gw', 'a b', 'x'.repeat(64), '../gw']) await expect(issueInstanceCertificate({ dir, name, hosts: [] })).rejects.toMatchObject({ code: 'invalid-name' });
    await expect(issueInstanceCertificate({ dir, name: 'gw2', hosts: ['not a host'] })).rejects.toBeInstanceOf(PkiError);
    await issueInstanceCertificate({ dir, name: 'gw3', hosts: [] });
    await expect(issueInstanceCertificate({ dir, name: 'gw3', hosts: [] })).rejects.toMatchObject({ code: 'exists' });
    await issueInstanceCertificate({ dir, name: 'gw3', hosts: [], force: true });
  });

  it('on the command line: prints the files and the cluster lines to paste; a bad name is one line and exit 1', async () => {
    const out = await runGatehouse(['pki', 'instance', 'gw4', '--dir', dir, '--host', '127.0.0.1']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain('instance certificate for gw4 (URI gatehouse-instance:gw4, 127.0.0.1):');
    expect(out.stdout).toContain(`  cluster:\n    instance: gw4\n    peerCert: ${join(dir, 'instances', 'gw4.crt')}\n    peerKey: ${join(dir, 'instances', 'gw4.key')}\n`);
    const bad = await runGatehouse(['pki', 'instance', 'a b', '--dir', dir]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^gatehouse pki instance: invalid instance name "a b"/m);
  });
});
