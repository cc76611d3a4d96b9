// The audit record: one JSON line per event. This shape is a public contract (README, "Audit record");
// add fields freely, never rename or repurpose one.
import type { PeerIdentity } from '../tls/peerIdentity.ts';

export type AuditEvent =
  | 'gateway.start'
  | 'gateway.stop'
  | 'config.reload'
  | 'revocation.reload'
  | 'tls.reject'
  | 'connection.open'
  | 'connection.close'
  | 'request'
  | 'tunnel.open'
  | 'tunnel.close'
  | 'publish.open' | 'publish.close';

export interface AuditClient {
  cn: string;
  subject: string;
  issuer: string;
  serial: string;
  fingerprint: string;
}

export interface AuditToken {
  user?: string;
  groups?: string[];
  revocationIds?: string[];
}

export interface AuditRecord {
  event: AuditEvent;
  /** Connection id, shared by every record of one client connection. */
  conn?: string;
  /** Request id within the connection: `<conn>.<n>`. */
  req?: string;
  /** Client address as `ip:port` (or `unix` for a UNIX-socket listener). */
  source?: string;
  client?: AuditClient;
  token?: AuditToken;
  route?: string;
  upstream?: string;
  /** The publisher connection (its `conn` id) a request or tunnel to a published service went through. */
  publisher?: string;
  protocol?: 'http' | 'websocket' | 'tcp';
  method?: string;
  /** Normalized path: what routing and policy saw. */
  path?: string;
  /** The request target exactly as the client sent it, when it differs from `path` (query included). */
  target?: string;
  decision?: 'allow' | 'deny';
  /** Why: the failing check or policy, the routing or TLS error; for closes, who closed. */
  reason?: string;
  status?: number;
  /** Bytes from client to upstream (request body, or tunnel bytes). */
  bytesIn?: number;
  /** Bytes from upstream to client (response body, or tunnel bytes). */
  bytesOut?: number;
  durationMs?: number;
  /** Free-form details for gateway events (config file, counts, errors). */
  detail?: Record<string, unknown>;
}

export function auditClient(identity: PeerIdentity | undefined): AuditClient | undefined {
  if (!identity) return undefined;
  const { cn, subject, issuer, serial, fingerprint } = identity;
  return { cn, subject, issuer, serial, fingerprint };
}
