// Short-lived client certificates from a CSR, without the network: the CSR's self-signature and key type are
// checked, the certificate names the IdP user (never the CSR's subject), is a clientAuth leaf of the issuing
// CA for the shortest of its lifetimes, and the token issued with it is bound to it and recorded with it.
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../src/audit/auditRecord.ts';
import { createIssuerService, type IssuerService } from '../src/issuer/issuerService.ts';
import { issueWithCertificate } from '../src/issuer/certifiedIssue.ts';
import { certificateAtStart } from '../src/login/certificateLogin.ts';
import { checkCsr, CERTIFICATE_BACKDATE_MS } from '../src/pki/csrCertificate.ts';
import { x509, webcrypto, type CryptoKeyPair } from '../src/pki/x509.ts';
import { certificatelessIdentity, identityFromPem } from '../src/tls/peerIdentity.ts';
import { inspectToken } from '../src/token/inspectToken.ts';
import { generateRootKey } from '../src/token/keyFiles.ts';
import { trustedSigners } from '../src/token/signers.ts';
import type { IssuerSettings } from '../src/config/issuerSettings.ts';
import { claimsOf, testIssuerRules, writeIssuerKey } from './support/issuerFixtures.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-certlogin-'));
let pki: TestPki;
let settings: IssuerSettings;
let issuerPublicKey: string;
const P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

async function csrPem(subject: string, algorithm: Record<string, unknown> = P256): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(algorithm as unknown as Parameters<typeof webcrypto.subtle.generateKey>[0], true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: subject, keys, signingAlgorithm: algorithm as unknown as x509.Pkcs10CertificateRequestCreateParams['signingAlgorithm'] });
  return csr.toString('pem');
}

/** An issuer service as the gateway makes it, under `rules`; its records land in `records`. */
function service(rules: IssuerSettings, records: AuditRecord[]): IssuerService {
  return createIssuerService({ settings: () => rules, rootPublicKey: () => undefined, auditFile: () => undefined, audit: { write: (r) => void records.push(r) }, revoke: async () => ({ ok: true, added: [] }) });
}

const login = (user: string, groups: string[], sessionSeconds?: number) => ({ claims: claimsOf(user, groups), ...(sessionSeconds !== undefined && { sessionEndsAt: new Date(Date.now() + sessionSeconds * 1000) }) });

beforeAll(async () => {
  pki = await makeTestPki(join(dir, 'certs'));
  const key = writeIssuerKey(dir);
  issuerPublicKey = key.publicKey;
  key.privateKey.free();
  settings = testIssuerRules({ signingKey: join(dir, 'issuer.key'), certificates: { ca: pki.caCertPath, caKey: join(pki.dir, 'ca.key'), ttl: '1h' } });
});

describe('the CSR', () => {
  it('takes EC P-256, Ed25519 and RSA 2048 keys', async () => {
    for (const algorithm of [P256, { name: 'Ed25519' }, { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }]) {
      const checked = await checkCsr(await csrPem('CN=x', algorithm));
      expect(checked.ok, String(algorithm.name)).toBe(true);
    }
  });

  it('refuses RSA 1024, P-384, garbage and an oversized body', async () => {
    const rsa1024 = await checkCsr(await csrPem('CN=x', { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }));
    expect(rsa1024).toMatchObject({ ok: false, code: 'csr-key-type' });
    expect(await checkCsr(await csrPem('CN=x', { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' }))).toMatchObject({ ok: false, code: 'csr-key-type' });
    expect(await checkCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n')).toMatchObject({ ok: false, code: 'csr-unreadable' });
    expect(await checkCsr(42)).toMatchObject({ ok: false, code: 'csr-unreadable' });
    expect(await checkCsr('A'.repeat(9000))).toMatchObject({ ok: false, code: 'csr-unreadable' });
  });

  it('refuses a CSR whose signature does not verify (its subject changed after signing)', async () => {
    // Same length names, so the DER stays well formed: only the signature no longer covers what it says.
    const der = Buffer.from(new x509.Pkcs10CertificateRequest(await csrPem('CN=alice')).rawData);
    const at = der.indexOf(Buffer.from('alice'));
    Buffer.from('mallo').copy(der, at);
    const forged = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(await checkCsr(forged)).toMatchObject({ ok: false, code: 'csr-signature' });
    const start = await certificateAtStart(settings, certificatelessIdentity('127.0.0.1'), forged);
    expect(start).toMatchObject({ ok: false, refusal: { code: 'GH_CSR_INVALID', status: 400 } });
  });

  it('is required of a connection without a certificate, and refused where no certificates are issued', async () => {
    expect(await certificateAtStart(settings, certificatelessIdentity('127.0.0.1'), undefined)).toMatchObject({ ok: false, refusal: { code: 'GH_CSR_REQUIRED' } });
    const alice = identityFromPem((await pki.client('alice')).cert);
    expect(await certificateAtStart(settings, alice, undefined)).toEqual({ ok: true });
    const off = await certificateAtStart(testIssuerRules(), alice, await csrPem('CN=alice'));
    expect(off).toMatchObject({ ok: false, refusal: { code: 'GH_CSR_INVALID', clientReason: 'this gateway issues no client certificates' } });
  });
});

describe('the certificate issued after the login', () => {
  it("names the IdP user, not the CSR's subject: a CSR saying bob gets alice's certificate, and her token is bound to it", async () => {
    const records: AuditRecord[] = [];
    const start = await certificateAtStart(settings, certificatelessIdentity('127.0.0.1'), await csrPem('CN=bob,O=admins'));
    if (!start.ok || start.csr === undefined) throw new Error('start refused');
    const written: AuditRecord[] = [];
    const { result, certificate } = await issueWithCertificate(service(settings, records), { login: login('alice', ['hpc']), certificate: certificatelessIdentity('127.0.0.1'), flow: 'device', writeRecord: (r) => void written.push(r) }, start.csr);
    if (!result.ok || certificate === undefined) throw new Error(result.ok ? 'no certificate' : result.refusal.reason);
    const cert = new X509Certificate(certificate);
    expect(cert.subject).toBe('CN=alice');
    expect(certificate + cert.subject + (cert.subjectAltName ?? '')).not.toContain('bob');
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(new X509Certificate(pki.caCert))).toBe(true);
    expect(cert.verify(new X509Certificate(pki.caCert).publicKey)).toBe(true);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    const identity = identityFromPem(certificate);
    expect(result.issued.fingerprint).toBe(identity.fingerprint);
    const signers = trustedSigners({ root: generateRootKey().publicKey, issuers: { idp: { keyId: 1, publicKey: issuerPublicKey } } });
    if (!signers.ok) throw new Error(signers.reason);
    const inspected = inspectToken(result.issued.token, signers.signers);
    expect(inspected.ok && inspected.value.blocks[0]?.source).toContain(identity.fingerprint);
    // The token ends no later than its certificate (1 h here, below hpc's 8 h).
    expect(result.issued.expiresAt.getTime()).toBeLessThanOrEqual(Date.parse(cert.validTo) + 1000);
    expect(records).toHaveLength(0);
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({ event: 'token.issue', decision: 'allow', client: { cn: 'alice', fingerprint: identity.fingerprint, serial: identity.serial }, detail: { fingerprint: identity.fingerprint, certificate: { serial: identity.serial, fingerprint: identity.fingerprint, notAfter: new Date(cert.validTo).toISOString(), key: 'ec P-256', csrSubject: 'CN=bob, O=admins', presentedBy: 'none' } } });
  });

  it('takes nothing else from the CSR: requested extensions (CA:TRUE, bob\'s names, serverAuth) are not copied', async () => {
    const keys = (await webcrypto.subtle.generateKey(P256 as unknown as Parameters<typeof webcrypto.subtle.generateKey>[0], true, ['sign', 'verify'])) as CryptoKeyPair;
    const asked = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=bob',
      keys,
      signingAlgorithm: P256 as unknown as x509.Pkcs10CertificateRequestCreateParams['signingAlgorithm'],
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'email', value: 'bob@example.org' }, { type: 'dns', value: 'gateway.example.org' }]),
      ],
    });
    const csr = await checkCsr(asked.toString('pem'));
    if (!csr.ok) throw new Error(csr.reason);
    const out = await issueWithCertificate(service(settings, []), { login: login('alice', ['hpc']), certificate: certificatelessIdentity(''), flow: 'device', writeRecord: () => {} }, csr.csr);
    const cert = new X509Certificate(out.certificate ?? '');
    expect(cert.subject).toBe('CN=alice');
    expect(cert.ca).toBe(false);
    expect(cert.subjectAltName).toBeUndefined();
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(new x509.X509Certificate(cert.raw).getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
  });

  it('is valid from a little before now until the shortest of its ttl, the token lifetime and the IdP session; serials differ', async () => {
    const csr = await checkCsr(await csrPem('CN=alice'));
    if (!csr.ok) throw new Error(csr.reason);
    const issue = async (rules: IssuerSettings, sessionSeconds?: number) => {
      const out = await issueWithCertificate(service(rules, []), { login: login('alice', ['hpc'], sessionSeconds), certificate: certificatelessIdentity(''), flow: 'device', writeRecord: () => {} }, csr.csr);
      if (out.certificate === undefined) throw new Error('no certificate');
      return new X509Certificate(out.certificate);
    };
    const before = Date.now();
    const hour = await issue(settings);
    expect(Date.parse(hour.validFrom)).toBeLessThanOrEqual(before - CERTIFICATE_BACKDATE_MS + 1000);
    expect(Date.parse(hour.validTo) - before).toBeGreaterThan(3590_000);
    expect(Date.parse(hour.validTo) - before).toBeLessThanOrEqual(3601_000);
    const session = await issue(settings, 600);
    expect(Date.parse(session.validTo) - before).toBeLessThanOrEqual(601_000);
    const capped = await issue({ ...settings, ttl: '20m' });
    expect(Date.parse(capped.validTo) - before).toBeLessThanOrEqual(1201_000);
    const maxTtl = await issue({ ...settings, certificates: { ...settings.certificates!, ttl: '12h', maxTtl: '2m' } });
    expect(Date.parse(maxTtl.validTo) - before).toBeLessThanOrEqual(121_000);
    expect(new Set([hour, session, capped, maxTtl].map((c) => c.serialNumber)).size).toBe(4);
  });

  it('is not made when the claim rules refuse the login: the refusal is recorded and no certificate leaves', async () => {
    const csr = await checkCsr(await csrPem('CN=carol'));
    if (!csr.ok) throw new Error(csr.reason);
    const written: AuditRecord[] = [];
    const out = await issueWithCertificate(service(settings, []), { login: login('carol', ['visitors']), certificate: certificatelessIdentity(''), flow: 'device', writeRecord: (r) => void written.push(r) }, csr.csr);
    expect(out.certificate).toBeUndefined();
    expect(out.result).toMatchObject({ ok: false, refusal: { code: 'no-group-allowed' } });
    expect(written).toEqual([expect.objectContaining({ event: 'token.issue', decision: 'deny' })]);
  });

  it('refuses to sign with a CA key others can read, with a record, and signs again once it is 0600', async () => {
    const own = await makeTestPki(join(dir, 'loose'));
    const loose = testIssuerRules({ signingKey: join(dir, 'issuer.key'), certificates: { ca: own.caCertPath, caKey: join(own.dir, 'ca.key') } });
    chmodSync(join(own.dir, 'ca.key'), 0o644);
    const csr = await checkCsr(await csrPem('CN=alice'));
    if (!csr.ok) throw new Error(csr.reason);
    const written: AuditRecord[] = [];
    const ask = { login: login('alice', ['hpc']), certificate: certificatelessIdentity(''), flow: 'device' as const, writeRecord: (r: AuditRecord) => void written.push(r) };
    const out = await issueWithCertificate(service(loose, []), ask, csr.csr);
    expect(out).toMatchObject({ result: { ok: false, refusal: { code: 'mint-failed', clientReason: 'cannot issue a certificate now' } } });
    expect(written[0]).toMatchObject({ event: 'token.issue', decision: 'deny' });
    expect(written[0]?.reason).toContain('readable by others');
    chmodSync(join(own.dir, 'ca.key'), 0o600);
    expect((await issueWithCertificate(service(loose, []), ask, csr.csr)).certificate).toBeDefined();
  });
});
