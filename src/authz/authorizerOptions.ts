// Turns the `authz` section of routes.yaml into RequestAuthorizer options: one place, used by the
// gateway and by the benchmark, so both run exactly the same authorizer.
import type { AuthzConfig } from '../config/schema.ts';
import type { AuthzObserver } from './authzObserver.ts';
import type { EngineBudget } from './types.ts';
import type { RevocationFeed } from './policy/revocationFeed.ts';
import type { ReloadResult, RequestAuthorizerOptions } from './requestAuthorizer.ts';

export function authorizerOptions(
  authz: AuthzConfig,
  hooks: { onRevocationReload?: (result: ReloadResult) => void; observer?: AuthzObserver; engineBudget?: EngineBudget; revocationFeed?: RevocationFeed } = {},
): RequestAuthorizerOptions {
  return {
    rootKeyFile: authz.rootKey,
    ...(authz.revocationList !== undefined && { revocationListFile: authz.revocationList }),
    externalKeys: authz.externalKeys,
    issuers: authz.issuers,
    workers: authz.workers,
    cache: authz.cache,
    ...hooks,
  };
}
