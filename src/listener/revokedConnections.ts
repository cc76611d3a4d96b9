// Connections whose client certificate no longer holds (a new CRL revokes it, or it expired): the handshake
// checks only new ones, so the open ones are found, their tunnels and publishers ended (close records), then dropped.
import type { TLSSocket } from 'node:tls';
import type { TunnelRegistry } from '../forward/tunnelSession.ts';
import type { CertificateRef } from '../tls/clientCrl.ts';
import type { ConnectionContext } from '../exchange/connection.ts';
import { contextOf } from './connectionContext.ts';

export const CERTIFICATE_REVOKED = 'client certificate revoked (tls.crl)';
export const CERTIFICATE_EXPIRED = 'client certificate expired';

/** How long the tunnels and publishers of an ended connection get to write their close records before it is dropped. */
const STOP_WAIT_MS = 5000;

/**
 * Ends every open connection of `connections` that `pick` selects, for `reason`: first what runs on it
 * through `tunnels` (tunnels, WebSockets, a publisher and its streams, each with its close record naming
 * the reason), then the connection itself (keep-alive requests too; connection.close names it). Returns how many.
 */
async function endConnectionsWhere(connections: Iterable<TLSSocket>, pick: (socket: TLSSocket, context: ConnectionContext) => boolean, reason: string, tunnels: TunnelRegistry): Promise<number> {
  const ended = new Map<string, TLSSocket>();
  for (const socket of connections) {
    const context = contextOf(socket);
    if (!context || socket.destroyed || context.endedBy !== undefined || !pick(socket, context)) continue;
    context.endedBy = reason;
    ended.set(context.id, socket);
  }
  if (ended.size === 0) return 0;
  // The close records name the reason; a stop that never finishes must not keep the connection alive.
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)));
  await Promise.race([tunnels.endConnections(new Set(ended.keys()), reason), waited]);
  clearTimeout(timer);
  for (const socket of ended.values()) socket.destroy();
  return ended.size;
}

/** At a CRL reload: the connections whose certificate the new list revokes. */
export function endRevokedConnections(connections: Iterable<TLSSocket>, isRevoked: (certificate: CertificateRef) => boolean, tunnels: TunnelRegistry): Promise<number> {
  return endConnectionsWhere(
    connections,
    (socket) => {
      const certificate = socket.getPeerX509Certificate();
      return certificate !== undefined && isRevoked(certificate);
    },
    CERTIFICATE_REVOKED,
    tunnels,
  );
}

/** Periodically: the connections whose certificate is past its notAfter (a handshake now would be refused). */
export function endExpiredConnections(connections: Iterable<TLSSocket>, now: number, tunnels: TunnelRegistry): Promise<number> {
  return endConnectionsWhere(connections, (_socket, context) => !(Date.parse(context.identity.notAfter) > now), CERTIFICATE_EXPIRED, tunnels);
}
