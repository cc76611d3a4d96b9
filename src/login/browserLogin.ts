// The authorization code flow with PKCE for browsers: "Sign in with <IdP>" on the sign-in page, ending in
// the session cookie (no token shown to the user).
import type { LoginDeps } from './loginEndpoints.ts';
import type { LoginEndpoint } from './loginPages.ts';

export function browserEndpoints(_deps: LoginDeps): LoginEndpoint[] {
  return [];
}
