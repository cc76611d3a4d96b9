// The listener's clocks, from `limits`: TLS handshake, request headers, whole request, and idle
// sockets (keep-alive with nothing in flight, or a response the client stopped reading).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import type { Socket } from 'node:net';
import type { GatewayLimits } from '../config/schema.ts';

type TimeoutLimits = Pick<GatewayLimits, 'handshakeTimeoutSeconds' | 'headersTimeoutSeconds' | 'requestTimeoutSeconds' | 'idleTimeoutSeconds' | 'maxHeaderBytes'>;

const ms = (seconds: number) => (seconds > 0 ? Math.max(1, Math.round(seconds * 1000)) : 0);

/**
 * Node checks header and request deadlines on a timer, not per socket: at its default (30 s) a 20 s
 * header timeout fires anywhere up to 50 s. Half a second keeps every deadline within a second.
 */
const CONNECTIONS_CHECK_MS = 500;

/** The https.createServer options that carry `limits`. */
export function serverTimeoutOptions(limits: TimeoutLimits) {
  const requestTimeout = ms(limits.requestTimeoutSeconds);
  const headersTimeout = ms(limits.headersTimeoutSeconds);
  return {
    handshakeTimeout: ms(limits.handshakeTimeoutSeconds),
    // Node refuses a header deadline later than the request deadline; the shorter one wins anyway.
    headersTimeout: requestTimeout > 0 ? Math.min(headersTimeout, requestTimeout) : headersTimeout,
    requestTimeout,
    keepAliveTimeout: ms(limits.idleTimeoutSeconds),
    connectionsCheckingInterval: CONNECTIONS_CHECK_MS,
    maxHeaderSize: limits.maxHeaderBytes,
  };
}

/** The response each socket is answering right now (HTTP/1.1: one at a time is written). */
const inFlight = new WeakMap<Socket, ServerResponse>();

/** Notes that `res` answers on `req`'s socket until it finishes or the socket closes. */
export function trackResponse(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket;
  inFlight.set(socket, res);
  res.once('close', () => {
    if (inFlight.get(socket) === res) inFlight.delete(socket);
  });
}

export function responseInFlight(socket: Socket): ServerResponse | undefined {
  return inFlight.get(socket);
}

/**
 * Destroys sockets idle for `idleTimeoutSeconds`: keep-alive connections with nothing in flight, and
 * responses the client has stopped reading (bytes queued, none leaving). A response still waiting on its
 * upstream is not the client's idleness: its clock restarts.
 */
export function destroyIdleSockets(server: Server, limits: TimeoutLimits): void {
  const idleMs = ms(limits.idleTimeoutSeconds);
  server.timeout = idleMs;
  // With a listener here Node leaves the decision to us (it would destroy only when nobody listens).
  server.on('timeout', (socket: Socket) => {
    const res = inFlight.get(socket);
    if (res && !res.writableEnded && socket.writableLength === 0) {
      socket.setTimeout(idleMs);
      return;
    }
    socket.destroy();
  });
}

/**
 * An upgraded or CONNECT socket leaves HTTP: the tunnel layer owns its idle timeout (per route), so
 * the HTTP one must not cut it.
 */
export function releaseToTunnel(socket: Socket): void {
  socket.setTimeout(0);
}
