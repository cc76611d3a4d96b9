// Dispatch: which stage takes a request, an upgrade or a CONNECT once the listener has it. The gateway's
// reserved paths (tunnel and publish endpoints, its own pages) are decided here, before any route.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ListenerHandlers } from '../listener/tlsListener.ts';
import { isPortalPath } from '../portal/portalHandler.ts';
import { isPublishEndpoint } from './publishEndpoint.ts';
import { isTunnelEndpoint } from './tunnelForwarder.ts';

export interface DispatchTargets {
  http: { handle(req: IncomingMessage, res: ServerResponse): Promise<void> | void };
  websocket: { handle(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | void };
  tunnels: {
    handleRequest(req: IncomingMessage, res: ServerResponse): void;
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | void;
    handleConnect(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> | void;
  };
  publish: {
    handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> | void;
    handleUpgrade(req: IncomingMessage, socket: Duplex): Promise<void> | void;
  };
  portal: { handle(req: IncomingMessage, res: ServerResponse): Promise<void> | void };
}

/** The listener's handlers: reserved paths first (judged on the normalized path), then routes. */
export function dispatchTo(to: DispatchTargets): ListenerHandlers {
  return {
    request(req, res) {
      if (isTunnelEndpoint(req.url)) return to.tunnels.handleRequest(req, res);
      if (isPublishEndpoint(req.url)) return to.publish.handleRequest(req, res);
      if (isPortalPath(req.url)) return to.portal.handle(req, res);
      return to.http.handle(req, res);
    },
    upgrade(req, socket, head) {
      if (isTunnelEndpoint(req.url)) return to.tunnels.handleUpgrade(req, socket, head);
      if (isPublishEndpoint(req.url)) return to.publish.handleUpgrade(req, socket);
      return to.websocket.handle(req, socket, head);
    },
    connect: (req, socket, head) => to.tunnels.handleConnect(req, socket, head),
  };
}
