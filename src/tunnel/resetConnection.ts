// Ends a connection with a TCP reset instead of a FIN, so the peer sees that its stream was cut short:
// a FIN (or a TLS connection closed without close_notify, which Node reports as a plain end) reads as complete.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';

/**
 * Resets `stream`'s TCP connection (a TLS socket's own TCP socket underneath), then destroys it. A UNIX
 * socket has no reset: it is only destroyed. Never throws.
 */
export function resetConnection(stream: Duplex): void {
  // A server-side TLS socket carries its TCP socket as `_parent` (Node's, not typed); resetting that
  // socket aborts the TLS connection under it.
  const tcp = stream instanceof TLSSocket ? (stream as TLSSocket & { _parent?: unknown })._parent : stream;
  if (tcp instanceof Socket && !tcp.destroyed) {
    try {
      tcp.resetAndDestroy();
    } catch {
      // Not a TCP handle (a UNIX socket, or a TLS client socket without a parent): destroy below.
    }
  }
  if (!stream.destroyed) stream.destroy();
}
