// The peer channel between the instances of a cluster, as both ends speak it: the instance role in a
// certificate, and the one header a relayed stream opens with (what the entry instance decided).
import { z } from 'zod';
import { INSTANCE_NAME } from '../tls/instanceRole.ts';
import type { RelayDecided, RelayTicket, UpstreamTarget } from './upstreamTarget.ts';

export { INSTANCE_URI_PREFIX, instanceOf } from '../tls/instanceRole.ts';

/** The header that carries the ticket (base64url JSON), and the one a refused stream's answer says why in. */
export const RELAY_HEADER = 'gatehouse-relay';
export const RELAY_ERROR_HEADER = 'gatehouse-relay-error';
/** A relayed stream is an HTTP/2 CONNECT to this authority (the ticket says where it really goes). */
export const RELAY_AUTHORITY = 'relay.gatehouse.invalid:443';

const text = (max: number) => z.string().min(1).max(max);
const identity = z.object({ cn: z.string().max(1024), subject: z.string().max(4096), issuer: z.string().max(4096), serial: text(128), fingerprint: text(128), sans: z.array(z.object({ kind: text(16), value: z.string().max(1024) })).max(64), notAfter: text(64) }).strict();
// The token's revocation ids travel too: the carrier refuses, and ends, what its own revocations name.
const token = z.object({ user: z.string().max(1024).optional(), revocationIds: z.array(z.string().max(256)).max(64).optional() }).passthrough();
const wire = z
  .object({
    v: z.literal(1),
    id: z.string().uuid(),
    from: z.string().regex(INSTANCE_NAME),
    user: text(256),
    service: text(256),
    publisher: text(128),
    fingerprint: text(128),
    decided: z.object({ identity, source: z.string().max(64), route: text(256), protocol: z.enum(['http', 'websocket', 'tcp', 'udp']), user: z.string().max(1024), path: z.string().max(16_384).optional(), token: token.optional() }).strict(),
  })
  .strict();

/** A relayed stream's ticket as the carrying instance reads it. */
export type RelayWire = z.infer<typeof wire>;

/** The header value for `target`'s relay, sent by the entry instance `from` (the ticket must be decided). */
export function encodeRelay(target: Extract<UpstreamTarget, { kind: 'published' }>, ticket: RelayTicket & { decided: RelayDecided }, from: string): string {
  const body = { v: 1, id: ticket.id, from, user: target.user, service: target.service, publisher: ticket.publisher, fingerprint: ticket.fingerprint, decided: ticket.decided };
  return Buffer.from(JSON.stringify(body)).toString('base64url');
}

/** Reads a ticket; anything but the exact shape is refused (the carrier acts on it without deciding again). */
export function decodeRelay(header: string | string[] | undefined): { ok: true; ticket: RelayWire } | { ok: false; reason: string } {
  if (typeof header !== 'string' || header.length > 64 * 1024) return { ok: false, reason: `no single ${RELAY_HEADER} header` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: `${RELAY_HEADER} is not base64url JSON` };
  }
  const checked = wire.safeParse(parsed);
  if (!checked.success) return { ok: false, reason: `${RELAY_HEADER}: ${checked.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ').slice(0, 300)}` };
  return { ok: true, ticket: checked.data };
}
