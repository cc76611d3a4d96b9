// Connections whose client certificate a new CRL revokes: the handshake checks only new ones, so at each
// CRL reload the open ones are found, their tunnels and publishers ended (close records), then dropped.
import type { TLSSocket } from 'node:tls';
import type { TunnelRegistry } from '../forward/tunnelSession.ts';
import type { CertificateRef } from '../tls/clientCrl.ts';
import { contextOf } from './connectionContext.ts';

export const CERTIFICATE_REVOKED = 'client certificate revoked (tls.crl)';

/** How long the tunnels and publishers of a revoked connection get to write their close records before it is dropped. */
const STOP_WAIT_MS = 5000;

/**
 * Ends every open connection of `connections` whose certificate `isRevoked` says is revoked: first what
 * runs on it through `tunnels` (tunnels, WebSockets, a publisher and its streams, each with its close
 * record naming the reason), then the connection itself (keep-alive requests too). Returns how many.
 */
export async function endRevokedConnections(connections: Iterable<TLSSocket>, isRevoked: (certificate: CertificateRef) => boolean, tunnels: TunnelRegistry): Promise<number> {
  const revoked = new Map<string, TLSSocket>();
  for (const socket of connections) {
    const context = contextOf(socket);
    const certificate = context && !socket.destroyed ? socket.getPeerX509Certificate() : undefined;
    if (context && certificate && isRevoked(certificate)) {
      context.endedBy = CERTIFICATE_REVOKED;
      revoked.set(context.id, socket);
    }
  }
  if (revoked.size === 0) return 0;
  // The close records name the reason; a stop that never finishes must not keep the connection alive.
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS)));
  await Promise.race([tunnels.endConnections(new Set(revoked.keys()), CERTIFICATE_REVOKED), waited]);
  clearTimeout(timer);
  for (const socket of revoked.values()) socket.destroy();
  return revoked.size;
}
