// Every endpoint of the issuer under LOGIN_PATH, and what they share from the gateway: the issuer, the
// session tokens (the code flow ends in a session cookie), the limits.
import type { SessionTokens } from '../authz/types.ts';
import type { GatewayLimits } from '../config/schema.ts';
import type { IssuerService } from '../issuer/issuerService.ts';
import { browserEndpoints } from './browserLogin.ts';
import { deviceEndpoints } from './deviceLogin.ts';
import type { LoginEndpoint } from './loginPages.ts';

export interface LoginDeps {
  issuer: IssuerService;
  /** Verifying and minting session tokens (the authorization workers). */
  sessions: () => SessionTokens;
  limits: () => GatewayLimits;
}

export function loginEndpoints(deps: LoginDeps): LoginEndpoint[] {
  return [...deviceEndpoints(deps), ...browserEndpoints(deps)];
}
