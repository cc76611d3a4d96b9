// The device authorization grant (RFC 8628) for terminals (`gatehouse login`): start, poll, refresh, logout.
import type { LoginDeps } from './loginEndpoints.ts';
import type { LoginEndpoint } from './loginPages.ts';

export function deviceEndpoints(_deps: LoginDeps): LoginEndpoint[] {
  return [];
}
