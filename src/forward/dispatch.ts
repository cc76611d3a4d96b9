// Dispatch: which stage takes a request, an upgrade or a CONNECT once the listener has it. The gateway's
// reserved paths (tunnel and publish endpoints, its own pages; see routing/reservedPaths) come before any route.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ListenerHandlers } from '../listener/tlsListener.ts';
import { reservedPath, type ReservedPath } from '../routing/reservedPaths.ts';

export interface DispatchTargets {
  http: { handle(req: IncomingMessage, res: ServerResponse): Promise<void> | void };
  websocket: { handle(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | void };
  tunnels: {
    handleRequest(req: IncomingMessage, res: ServerResponse): void;
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, routeName: string): Promise<void> | void;
    handleConnect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | void;
  };
  publish: {
    handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> | void;
    handleUpgrade(req: IncomingMessage, socket: Duplex): Promise<void> | void;
  };
  portal: {
    handle(req: IncomingMessage, res: ServerResponse, page: Extract<ReservedPath, { kind: 'portal' }>): Promise<void> | void;
    refuseUpgrade(req: IncomingMessage, socket: Duplex, page: Extract<ReservedPath, { kind: 'portal' }>): void;
  };
}

/** The listener's handlers: reserved paths first (judged on the normalized path), then routes. */
export function dispatchTo(to: DispatchTargets): ListenerHandlers {
  return {
    request(req, res) {
      const reserved = reservedPath(req.url);
      if (reserved === undefined) return to.http.handle(req, res);
      if (reserved.kind === 'tunnel') return to.tunnels.handleRequest(req, res);
      if (reserved.kind === 'publish') return to.publish.handleRequest(req, res);
      return to.portal.handle(req, res, reserved);
    },
    // The same decision as for a request: a reserved path never reaches a route, whichever way it comes in.
    upgrade(req, socket, head) {
      const reserved = reservedPath(req.url);
      if (reserved === undefined) return to.websocket.handle(req, socket, head);
      if (reserved.kind === 'tunnel') return to.tunnels.handleUpgrade(req, socket, head, reserved.routeName);
      if (reserved.kind === 'publish') return to.publish.handleUpgrade(req, socket);
      return to.portal.refuseUpgrade(req, socket, reserved);
    },
    connect: (req, socket, head) => to.tunnels.handleConnect(req, socket, head),
  };
}
