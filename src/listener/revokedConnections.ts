// Connections whose client certificate a new CRL revokes: the handshake checks only new ones, so at each
// CRL reload the open ones are found, their tunnels and publishers ended (close records), then dropped.
import type { TLSSocket } from 'node:tls';
import type { TunnelRegistry } from '../forward/tunnelSession.ts';
import type { CertificateRef } from '../tls/clientCrl.ts';
import { contextOf } from './connectionContext.ts';

export const CERTIFICATE_REVOKED = 'client certificate revoked (tls.crl)';

/**
 * Ends every open connection of `connections` whose certificate `isRevoked` says is revoked: first what
 * runs on it through `tunnels` (tunnels, WebSockets, a publisher and its streams, each with its close
 * record naming the reason), then the connection itself (keep-alive requests too). Returns how many.
 */
export async function endRevokedConnections(connections: Iterable<TLSSocket>, isRevoked: (certificate: CertificateRef) => boolean, tunnels: TunnelRegistry): Promise<number> {
  const revoked = new Map<string, TLSSocket>();
  for (const socket of connections) {
    const context = contextOf(socket);
    const certificate = socket.destroyed ? undefined : socket.getPeerX509Certificate();
    if (context && certificate && isRevoked(certificate)) revoked.set(context.id, socket);
  }
  if (revoked.size === 0) return 0;
  for (const socket of revoked.values()) {
    const context = contextOf(socket);
    if (context) context.endedBy = CERTIFICATE_REVOKED;
  }
  await tunnels.endConnections(new Set(revoked.keys()), CERTIFICATE_REVOKED);
  for (const socket of revoked.values()) socket.destroy();
  return revoked.size;
}
