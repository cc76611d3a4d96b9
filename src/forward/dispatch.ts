// Dispatch: which stage takes a request, an upgrade or a CONNECT once the listener has it. The gateway's
// reserved paths (tunnel and publish endpoints, its own pages; see routing/reservedPaths) come before any route.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ConnectionContext, ListenerHandlers } from '../exchange/connection.ts';
import { reservedPath, type ReservedPath } from '../routing/reservedPaths.ts';
import { refuse } from '../errors/refusal.ts';
import { sendRefusal, sendRefusalOnSocket } from './refusals.ts';

export interface DispatchTargets {
  http: { handle(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse): Promise<void> | void };
  websocket: { handle(conn: ConnectionContext, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | void };
  tunnels: {
    handleRequest(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse): void;
    handleUpgrade(conn: ConnectionContext, req: IncomingMessage, socket: Duplex, head: Buffer, routeName: string): Promise<void> | void;
    handleConnect(conn: ConnectionContext, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | void;
  };
  publish: {
    handleRequest(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse): Promise<void> | void;
    handleUpgrade(conn: ConnectionContext, req: IncomingMessage, socket: Duplex): Promise<void> | void;
  };
  portal: {
    handle(conn: ConnectionContext, req: IncomingMessage, res: ServerResponse, page: Extract<ReservedPath, { kind: 'portal' }>): Promise<void> | void;
    refuseUpgrade(conn: ConnectionContext, req: IncomingMessage, socket: Duplex, page: Extract<ReservedPath, { kind: 'portal' }>): void;
  };
}

/** A socket that left HTTP parsing: errors are the peer's, not the gateway's to crash on. */
function refuseUnauthenticated(socket: Duplex): void {
  socket.on('error', () => {});
  sendRefusalOnSocket(socket, refuse('GH_UNAUTHENTICATED_CONNECTION', 'no connection context'));
}

/**
 * The listener's handlers: reserved paths first (judged on the normalized path), then routes. Each stage
 * gets the connection's context from here; a connection without one (never authenticated) goes no further.
 */
export function dispatchTo(to: DispatchTargets): ListenerHandlers {
  return {
    request(req, res, conn) {
      if (!conn) return sendRefusal(res, refuse('GH_UNAUTHENTICATED_CONNECTION', 'no connection context'));
      const reserved = reservedPath(req.url);
      if (reserved === undefined) return to.http.handle(conn, req, res);
      if (reserved.kind === 'tunnel') return to.tunnels.handleRequest(conn, req, res);
      if (reserved.kind === 'publish') return to.publish.handleRequest(conn, req, res);
      return to.portal.handle(conn, req, res, reserved);
    },
    // The same decision as for a request: a reserved path never reaches a route, whichever way it comes in.
    upgrade(req, socket, head, conn) {
      if (!conn) return refuseUnauthenticated(socket);
      const reserved = reservedPath(req.url);
      if (reserved === undefined) return to.websocket.handle(conn, req, socket, head);
      if (reserved.kind === 'tunnel') return to.tunnels.handleUpgrade(conn, req, socket, head, reserved.routeName);
      if (reserved.kind === 'publish') return to.publish.handleUpgrade(conn, req, socket);
      return to.portal.refuseUpgrade(conn, req, socket, reserved);
    },
    connect(req, socket, head, conn) {
      if (!conn) return refuseUnauthenticated(socket);
      return to.tunnels.handleConnect(conn, req, socket, head);
    },
  };
}
