// What a client gets for a token the issuer minted (the device flow's token answer and refresh): the token,
// its user, when it ends, until when it may be refreshed without logging in again, and its revocation id.
import type { IssuerSettings } from '../config/issuerSettings.ts';
import type { IssuedToken } from '../issuer/issueToken.ts';
import { parseTtl } from '../token/duration.ts';
import type { IssuedLogin } from '../token/mintToken.ts';

export interface IssuedAnswer {
  token: string;
  user: string;
  expiresAt: string;
  refreshUntil: string;
  revocationId: string;
}

/**
 * Until when tokens of `login` may be refreshed: `issuer.refreshLimit` after the login, never past the IdP
 * session's end; undefined when the site allows no refresh (refreshLimit 0).
 */
export function refreshDeadline(login: IssuedLogin, settings: Pick<IssuerSettings, 'refreshLimit'>): Date | undefined {
  if (settings.refreshLimit === 0) return undefined;
  const limit = parseTtl(settings.refreshLimit);
  if (!limit.ok) return undefined;
  const until = login.time.getTime() + limit.value * 1000;
  const end = login.idpSessionEnd?.getTime();
  return new Date(end !== undefined && end < until ? end : until);
}

export function issuedAnswer(issued: IssuedToken, settings: Pick<IssuerSettings, 'refreshLimit'>): IssuedAnswer {
  // No refresh allowed: the token's own end is as far as this login goes. A deadline before the token's end
  // is said as it is: a refresh then gives nothing longer, and the client knows to log in again.
  const refreshUntil = refreshDeadline(issued.login, settings) ?? issued.expiresAt;
  return { token: issued.token, user: issued.grant.user, expiresAt: issued.expiresAt.toISOString(), refreshUntil: refreshUntil.toISOString(), revocationId: issued.revocationId };
}
