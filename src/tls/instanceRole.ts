// The instance role in a certificate (cluster peers): a URI name `gatehouse-instance:<name>`, as the peer
// channel checks it and `gatehouse pki instance` writes it.
import type { PeerIdentity } from './peerIdentity.ts';

/** A certificate is an instance's when it names it in a URI: `gatehouse-instance:<instance name>`. */
export const INSTANCE_URI_PREFIX = 'gatehouse-instance:';

/** An instance name: what cluster.instance, the URI name and the relay ticket's `from` may hold. */
export const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** The instance a certificate's identity names, or undefined: a user's certificate has no instance role. */
export function instanceOf(identity: PeerIdentity): string | undefined {
  const names = identity.sans.filter((s) => s.kind === 'uri' && s.value.startsWith(INSTANCE_URI_PREFIX)).map((s) => s.value.slice(INSTANCE_URI_PREFIX.length));
  // Exactly one role name, and a valid one: a certificate naming two instances is no instance's.
  return names.length === 1 && INSTANCE_NAME.test(names[0] as string) ? names[0] : undefined;
}
