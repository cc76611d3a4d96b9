// A login's token with a certificate made for it (issuer.certificates): once the IdP approved, a certificate for
// the IdP user from the CSR the login brought (the CSR gives the key only; the login gives the name), then the
// token, bound to that certificate and no longer-lived, and its token.issue record naming it.
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { IssuerSettings } from '../config/issuerSettings.ts';
import { issueFromCsr, loadIssuingCa, type CheckedCsr } from '../pki/csrCertificate.ts';
import type { IssuingCa } from '../pki/certificates.ts';
import { certificatelessIdentity, hasCertificate, identityFromPem, type PeerIdentity } from '../tls/peerIdentity.ts';
import { parseTtl } from '../token/duration.ts';
import { decideGrant } from './claimGrant.ts';
import type { IssueAsk, IssuerService } from './issuerService.ts';
import type { IssueResult } from './issueToken.ts';

type CertificateSettings = NonNullable<IssuerSettings['certificates']>;

/** The issuing CA per settings object: read once, again after a reload or a failure. */
const authorities = new WeakMap<CertificateSettings, Promise<IssuingCa>>();

function authorityOf(settings: CertificateSettings): Promise<IssuingCa> {
  let ca = authorities.get(settings);
  if (ca === undefined) {
    ca = loadIssuingCa(settings.ca, settings.caKey);
    authorities.set(settings, ca);
    ca.catch(() => authorities.delete(settings));
  }
  return ca;
}

const seconds = (text: string | undefined): number => {
  const parsed = text === undefined ? undefined : parseTtl(text);
  return parsed?.ok ? parsed.value : Infinity;
};

/** A name fit for a certificate's CN from an IdP claim: printable, no separators a DN reader could trip on. */
const CERTIFICATE_NAME = /^[^\x00-\x1f\x7f,+"\\<>;=]{1,64}$/;

/** Who the certificate names: the claim the site binds logins to (certificate.field and .claim), never the CSR's subject. */
function holderOf(settings: IssuerSettings, claims: Readonly<Record<string, unknown>>): { cn: string; email?: string } | undefined {
  const { field, claim } = settings.certificate;
  const bound = claims[claim ?? settings.claims.user];
  const user = claims[settings.claims.user];
  const cn = field === 'cn' ? bound : user;
  if (typeof cn !== 'string' || !CERTIFICATE_NAME.test(cn)) return undefined;
  if (field !== 'email') return { cn };
  return typeof bound === 'string' && /^[^\s@<>(),;:"\\]+@[A-Za-z0-9.-]+$/.test(bound) ? { cn, email: bound } : undefined;
}

const certificateFailed = (reason: string): IssueResult => ({ ok: false, refusal: { code: 'mint-failed', clientReason: 'cannot issue a certificate now', reason }, claimsUsed: {}, rules: [] });

/** A login's issuance whose record the caller writes (a login endpoint closes its exchange with it). */
export type CertifiedAsk = IssueAsk & { writeRecord: (record: AuditRecord) => void };

export interface CertifiedIssue {
  result: IssueResult;
  /** PEM of the certificate the token is bound to (the token answer's `certificate`). */
  certificate?: string;
}

/**
 * Mints the token of an approved login (issuer.issue, its token.issue record to `ask.writeRecord`). With a
 * CSR, first a certificate for the IdP user: notAfter = the least of issuer.certificates.ttl and maxTtl, the
 * token's lifetime and the IdP session; the token is bound to it and lives no longer; the record says which.
 */
export async function issueWithCertificate(issuer: Pick<IssuerService, 'settings' | 'issue'>, ask: CertifiedAsk, csr: CheckedCsr | undefined): Promise<CertifiedIssue> {
  if (csr === undefined) return { result: issuer.issue(ask) };
  const settings = issuer.settings();
  const now = ask.now ?? new Date();
  const holder = settings === undefined ? undefined : holderOf(settings, ask.login.claims);
  // The grant as it would be for a certificate of that holder: refused here, the refusal and its record are issue()'s.
  const provisional: PeerIdentity = { ...certificatelessIdentity(''), cn: holder?.cn ?? '', sans: holder?.email !== undefined ? [{ kind: 'email', value: holder.email }] : [] };
  const grant = settings === undefined ? undefined : decideGrant({ claims: ask.login.claims, certificate: provisional, rules: settings, now, ...(ask.login.sessionEndsAt !== undefined && { idpSessionEndsAt: ask.login.sessionEndsAt }), ...(ask.request !== undefined && { request: ask.request }) });
  if (settings === undefined || holder === undefined || !grant?.ok) return { result: issuer.issue({ ...ask, certificate: provisional }) };
  const presentedBy = hasCertificate(ask.certificate) ? ask.certificate.fingerprint : 'none';
  const certificates = settings.certificates;
  const lifetime = certificates && Math.min(seconds(certificates.ttl), seconds(certificates.maxTtl), grant.grant.ttlSeconds);
  let issued: Awaited<ReturnType<typeof issueFromCsr>>;
  try {
    if (certificates === undefined || lifetime === undefined) throw new Error('not set any more (a reload while the login was pending)');
    issued = await issueFromCsr(await authorityOf(certificates), csr, { user: holder.cn, ...(holder.email !== undefined && { email: holder.email }), now, notAfter: new Date(now.getTime() + lifetime * 1000) });
  } catch (err) {
    const result = certificateFailed(`issuer.certificates: ${err instanceof Error ? err.message : String(err)}`);
    ask.writeRecord(failedRecord(ask, result));
    return { result };
  }
  const certificate = identityFromPem(issued.pem);
  const detail = { serial: issued.serial, fingerprint: issued.fingerprint, notBefore: issued.notBefore.toISOString(), notAfter: issued.notAfter.toISOString(), key: csr.keyKind, csrSubject: csr.askedSubject.slice(0, 200), presentedBy };
  const result = issuer.issue({
    ...ask,
    certificate,
    // The token ends with its certificate at the latest: a token without its certificate is of no use.
    request: { ...ask.request, ttlSeconds: Math.min(ask.request?.ttlSeconds ?? Infinity, lifetime ?? 0) },
    writeRecord: (record) => ask.writeRecord({ ...record, detail: { ...record.detail, certificate: detail } }),
  });
  return result.ok ? { result, certificate: issued.pem } : { result };
}

/** The token.issue deny record of a login whose certificate could not be made (no token either). */
function failedRecord(ask: IssueAsk, result: IssueResult): AuditRecord {
  const reason = result.ok ? '' : `${result.refusal.code}: ${result.refusal.reason}`;
  return { event: 'token.issue', ...(ask.source !== undefined && { source: ask.source }), decision: 'deny', reason, detail: { idp: { issuer: ask.login.claims.iss, subject: ask.login.claims.sub }, flow: ask.flow, certificate: { presentedBy: hasCertificate(ask.certificate) ? ask.certificate.fingerprint : 'none' } } };
}
