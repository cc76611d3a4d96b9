// Every endpoint of the issuer under LOGIN_PATH, and what they share from the gateway: the issuer, the
// session tokens (the code flow ends in a session cookie, refresh verifies in the workers), the limits, the bearer token as admission reads it.
import type { IncomingHttpHeaders } from 'node:http';
import type { BearerCredential } from '../admission/bearerCredential.ts';
import type { SessionTokens } from '../authz/types.ts';
import type { GatewayLimits } from '../config/schema.ts';
import type { IssuerService } from '../issuer/issuerService.ts';
import { browserEndpoints } from './browserLogin.ts';
import { deviceEndpoints } from './deviceLogin.ts';
import type { LoginEndpoint } from './loginPages.ts';
import { refreshEndpoints } from './refreshLogin.ts';

export interface LoginDeps {
  issuer: IssuerService;
  /** Verifying and minting session tokens (the authorization workers). */
  sessions: () => SessionTokens;
  limits: () => GatewayLimits;
  /** The request's `Authorization: Bearer` token, size-checked as admission does (refresh, logout). */
  bearer: (headers: IncomingHttpHeaders) => BearerCredential;
}

export function loginEndpoints(deps: LoginDeps): LoginEndpoint[] {
  return [...deviceEndpoints(deps), ...refreshEndpoints(deps), ...browserEndpoints(deps)];
}
