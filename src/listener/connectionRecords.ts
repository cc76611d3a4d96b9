// One accepted connection from its handshake to its end: its context attached where the handlers find it,
// connection.open, and connection.close with its counts; certificate-less connections (issuer.certificates) apart.
import type { TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient } from '../audit/auditRecord.ts';
import type { ConnectionContext } from '../exchange/connection.ts';
import { attachCertificateless, attachContext, rawConnectionOf } from './connectionContext.ts';

/** What a certificate-less connection's records say of it (they name no client). */
const CERTIFICATELESS_DETAIL = 'none: the certificate login only';

export interface TrackedConnection {
  audit: Pick<AuditLog, 'write'>;
  /** The listener's open connections: shutdown waits for their close records. */
  connections: Set<TLSSocket>;
  /** The trusted balancer that relayed it (PROXY protocol). */
  via?: string;
  /** It presented no client certificate: its context is kept where only the certificate-less handlers look. */
  certificateless: boolean;
}

export function trackConnection(socket: TLSSocket, context: ConnectionContext, tracked: TrackedConnection): void {
  const { audit, connections, via, certificateless } = tracked;
  if (certificateless) attachCertificateless(socket, context);
  else attachContext(socket, context);
  // Its handshake is complete: shutdown drains it like any other instead of dropping it.
  const raw = rawConnectionOf(socket);
  if (raw) raw.authenticated = true;
  connections.add(socket);
  const { id, source, identity } = context;
  const certificate = certificateless ? { certificate: CERTIFICATELESS_DETAIL } : undefined;
  audit.write({ event: 'connection.open', conn: id, source, client: auditClient(identity), reason: `${socket.getProtocol() ?? 'TLS'} ${socket.getCipher()?.name ?? ''}`.trim(), ...((via || certificate) && { detail: { ...(via && { via }), ...certificate } }) });
  socket.once('close', () => {
    connections.delete(socket);
    audit.write({
      event: 'connection.close',
      conn: id,
      source,
      client: auditClient(identity),
      bytesIn: socket.bytesRead,
      bytesOut: socket.bytesWritten,
      durationMs: Math.round(performance.now() - context.openedAt),
      ...(context.endedBy !== undefined && { reason: context.endedBy }),
      detail: { requests: context.requests, ...certificate },
    });
  });
}
