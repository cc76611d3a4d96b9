// The certificate step of the device login at its start (issuer.certificates): the CSR is checked, and a
// connection without a certificate must bring one. On approval the issuer makes the certificate (issuer/certifiedIssue.ts).
import type { IssuerSettings } from '../config/issuerSettings.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import { checkCsr, type CheckedCsr } from '../pki/csrCertificate.ts';
import { hasCertificate, type PeerIdentity } from '../tls/peerIdentity.ts';

/**
 * At the device start: the body's `csr` checked, to keep with the pending login; undefined when none was sent
 * by a connection with a certificate (the token is then bound to that one, as without issuer.certificates).
 */
export async function certificateAtStart(settings: IssuerSettings | undefined, identity: PeerIdentity, csr: unknown): Promise<{ ok: true; csr?: CheckedCsr } | { ok: false; refusal: Refusal }> {
  if (csr === undefined) {
    if (hasCertificate(identity)) return { ok: true };
    return { ok: false, refusal: refuse('GH_CSR_REQUIRED', 'a device login without a client certificate sent no csr') };
  }
  if (settings?.certificates === undefined) return { ok: false, refusal: refuse('GH_CSR_INVALID', 'csr sent, but issuer.certificates is not set', { clientReason: 'this gateway issues no client certificates' }) };
  const checked = await checkCsr(csr);
  if (!checked.ok) return { ok: false, refusal: refuse('GH_CSR_INVALID', `${checked.code}: ${checked.reason}`, { clientReason: checked.clientReason }) };
  return { ok: true, csr: checked.csr };
}
