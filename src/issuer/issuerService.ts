// The issuer as a gateway (or `gatehouse issuer`) runs it: the issuer key and the relying party, made
// once per `issuer:` settings, minting with the token.issue record written, and revoking what it issued.
import type { AuditLog } from '../audit/auditLog.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { IssuerSettings } from '../config/issuerSettings.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { IssuedLogin } from '../token/mintToken.ts';
import type { IssueRequest } from './claimGrant.ts';
import type { CheckedCsr } from '../pki/csrCertificate.ts';
import { issueWithCertificate, type CertifiedAsk, type CertifiedIssue } from './certifiedIssue.ts';
import { issueRecord } from './issueRecord.ts';
import { issuedRevocationIds } from './issuedTokens.ts';
import { issueToken, type IssueResult } from './issueToken.ts';
import { readIssuerKey, type IssuerKey } from './issuerKey.ts';
import { readFileSync } from 'node:fs';
import { providerFetch, type ProviderFetch } from './providerFetch.ts';
import { connectProvider, type Login, type RelyingParty } from './relyingParty.ts';

export type RevokeResult = { ok: true; added: string[] } | { ok: false; reason: string };

export interface IssuerServiceDeps {
  /** The running config's `issuer:` block (undefined: no issuer here); read per call, so a reload applies. */
  settings: () => IssuerSettings | undefined;
  /** The gateway's token root key (`ed25519/<hex>`), which the issuer key must never be. */
  rootPublicKey: () => string | undefined;
  audit: Pick<AuditLog, 'write'>;
  /** Revokes at once on this gateway (and, in a cluster, on every instance): logout, refresh. */
  revoke: (ids: readonly string[]) => Promise<RevokeResult>;
  /** The audit file in force, whose token.issue records name the tokens of each login. */
  auditFile: () => string | undefined;
}

export interface IssueAsk {
  login: Login;
  /** The certificate the token is bound to (the one presented at login, or the one just issued from a CSR). */
  certificate: PeerIdentity;
  flow: 'device' | 'code' | 'refresh';
  /** `ip:port` of the client. */
  source?: string;
  request?: IssueRequest;
  delegationKey?: string;
  now?: Date;
  /** Fields the caller adds to the token.issue record (a correlation id, the refreshed token's id). */
  recordExtra?: Partial<AuditRecord>;
  /** A refresh: the login the token comes from (kept in the new token); absent = a new login. */
  previous?: IssuedLogin;
  /** Where the token.issue record goes instead of the audit log (a login endpoint closes its exchange with it). */
  writeRecord?: (record: AuditRecord) => void;
}

export type IssuerUnavailable = { ok: false; reason: string };

export interface IssuerService {
  /** The settings in force, or undefined when this gateway runs no issuer. */
  settings(): IssuerSettings | undefined;
  /** The issuer key for the current settings (read once per settings object). */
  key(): { ok: true; key: IssuerKey } | IssuerUnavailable;
  /** The relying party for the current settings: discovery runs once, again after a failure. */
  relyingParty(): Promise<{ ok: true; party: RelyingParty } | IssuerUnavailable>;
  /** Mints under the claim rules and writes the token.issue record (allow or deny). */
  issue(ask: IssueAsk): IssueResult;
  /** issue(), with a certificate made first from `csr` when the login brought one (issuer.certificates): see certifiedIssue.ts. */
  issueWithCertificate(ask: CertifiedAsk, csr: CheckedCsr | undefined): Promise<CertifiedIssue>;
  revoke(ids: readonly string[]): Promise<RevokeResult>;
  /** Revocation ids of every token of a login (its first and each refresh), as the audit file's token.issue records name them. */
  tokensOfLogin(loginId: string): Promise<{ ok: true; ids: string[] } | IssuerUnavailable>;
  close(): Promise<void>;
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

export function createIssuerService(deps: IssuerServiceDeps): IssuerService {
  let keyFor: { settings: IssuerSettings; result: ReturnType<IssuerService['key']> } | undefined;
  let partyFor: { settings: IssuerSettings; party: Promise<RelyingParty>; fetch: ProviderFetch } | undefined;

  const key: IssuerService['key'] = () => {
    const settings = deps.settings();
    if (settings === undefined) return { ok: false, reason: 'this gateway runs no issuer' };
    if (keyFor?.settings !== settings) {
      if (keyFor?.result.ok) keyFor.result.key.privateKey.free();
      const read = readIssuerKey(settings.signingKey, { name: settings.name, keyId: settings.keyId }, deps.rootPublicKey());
      keyFor = { settings, result: read.ok ? { ok: true, key: read.value } : { ok: false, reason: read.error.message } };
    }
    return keyFor.result;
  };

  return {
    settings: deps.settings,
    key,
    async relyingParty() {
      const settings = deps.settings();
      if (settings === undefined) return { ok: false, reason: 'this gateway runs no issuer' };
      if (partyFor?.settings !== settings) {
        const previous = partyFor;
        try {
          const { provider } = settings;
          const fetch = providerFetch(provider.ca !== undefined ? readFileSync(provider.ca, 'utf8') : undefined);
          const clientSecret = provider.clientSecretFile !== undefined ? readFileSync(provider.clientSecretFile, 'utf8').trim() : undefined;
          const party = connectProvider({ url: provider.url, clientId: provider.clientId, timeoutSeconds: provider.timeoutSeconds, ...(clientSecret !== undefined && { clientSecret }), fetch: fetch.fetch });
          partyFor = { settings, party, fetch };
        } catch (err) {
          return { ok: false, reason: `issuer.provider: ${message(err)}` };
        }
        void previous?.fetch.close();
      }
      const current = partyFor;
      try {
        return { ok: true, party: await current.party };
      } catch (err) {
        // Discovery failed (the IdP down, a wrong URL): the next login tries again.
        if (partyFor === current) partyFor = undefined;
        void current.fetch.close();
        return { ok: false, reason: `the identity provider cannot be reached: ${message(err)}` };
      }
    },
    issue(ask) {
      const settings = deps.settings();
      const signing = key();
      const now = ask.now ?? new Date();
      const result: IssueResult =
        settings === undefined || !signing.ok
          ? { ok: false, refusal: { code: 'mint-failed', clientReason: 'cannot issue a token now', reason: settings === undefined ? 'this gateway runs no issuer' : signing.ok ? '' : signing.reason }, claimsUsed: {}, rules: [] }
          : issueToken({
              claims: ask.login.claims,
              certificate: ask.certificate,
              // A refresh has no IdP claims to hold against the certificate: the token it refreshes was
              // checked so at login, and is bound to this very certificate (its holder verified it).
              rules: ask.previous === undefined ? settings : { ...settings, certificate: { field: 'none' } },
              key: signing.key,
              now,
              ...(ask.login.sessionEndsAt !== undefined && { idpSessionEndsAt: ask.login.sessionEndsAt }),
              ...(ask.request !== undefined && { request: ask.request }),
              ...(ask.delegationKey !== undefined && { delegationKey: ask.delegationKey }),
              ...(ask.previous !== undefined && { login: ask.previous }),
            });
      (ask.writeRecord ?? ((record: AuditRecord) => deps.audit.write(record)))({ ...issueRecord({ result, certificate: ask.certificate, flow: ask.flow, ...(ask.source !== undefined && { source: ask.source }) }), ...ask.recordExtra });
      return result;
    },
    issueWithCertificate(ask, csr) {
      return issueWithCertificate(this, ask, csr);
    },
    revoke: deps.revoke,
    async tokensOfLogin(loginId) {
      const file = deps.auditFile();
      if (file === undefined) return { ok: false, reason: 'no audit file' };
      try {
        return { ok: true, ids: await issuedRevocationIds([file], { loginId }) };
      } catch (err) {
        return { ok: false, reason: `cannot read the audit file: ${message(err)}` };
      }
    },
    async close() {
      if (keyFor?.result.ok) keyFor.result.key.privateKey.free();
      keyFor = undefined;
      await partyFor?.fetch.close();
      partyFor = undefined;
    },
  };
}
