// Dispatch: which way in takes a request, an upgrade or a CONNECT once the listener has it. The gateway's
// reserved paths (tunnel and publish endpoints, its own pages; see routing/reservedPaths) come before any route.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { ConnectionContext, ListenerHandlers } from './connection.ts';
import { reservedPath, type ReservedPath } from '../routing/reservedPaths.ts';
import { refuse } from '../errors/refusal.ts';
import { ignoreSocketErrors, sendRefusal, sendRefusalOnSocket } from '../forward/refusals.ts';
import { PUBLISH_PATH } from '../routing/reservedPaths.ts';
import { PUBLISH_PROTOCOL } from '../upstream/publishProtocol.ts';
import { redactTarget } from '../forward/redactTarget.ts';
import { certificatelessTo } from './certificatelessDispatch.ts';
import { enter } from './enter.ts';
import { dispatchStream } from './h2Dispatch.ts';
import { openExchange, refuseUncounted, type ExchangeSinks } from './exchange.ts';
import type { DecisionKind, WayIn } from './wayIn.ts';

export type PortalPage = Extract<ReservedPath, { kind: 'portal' }>;
export type UdpPath = Extract<ReservedPath, { kind: 'udp' }>;

/** A way in of any state and decision, as dispatch hands it arrivals of the shape `A`. */
type WayInOf<A extends unknown[]> = WayIn<A, unknown, DecisionKind>;

export interface DispatchTargets {
  /** Where dispatch's own refusals (reserved paths taking the wrong kind of request) are recorded. */
  sinks: ExchangeSinks;
  http: WayInOf<[IncomingMessage, ServerResponse]>;
  websocket: WayInOf<[IncomingMessage, Duplex, Buffer]>;
  connect: WayInOf<[IncomingMessage, Duplex, Buffer]>;
  tunnelEndpoint: WayInOf<[IncomingMessage, Duplex, Buffer, string]>;
  publish: WayInOf<[IncomingMessage, Duplex]>;
  /** UDP flows (RFC 9298 CONNECT-UDP over HTTP/1.1, or the WebSocket transport) to the route or target named. */
  udp: WayInOf<[IncomingMessage, Duplex, Buffer, UdpPath]>;
  /** The same UDP flows over HTTP/2 (RFC 9298 §3.5 extended CONNECT), a stream each. */
  udpH2: WayInOf<[ServerHttp2Stream, IncomingHttpHeaders, UdpPath]>;
  portal: WayInOf<[IncomingMessage, ServerResponse, PortalPage]>;
}

/** A socket that left HTTP parsing: errors are the peer's, not the gateway's to crash on. */
function refuseUnauthenticated(socket: Duplex): void {
  socket.on('error', ignoreSocketErrors);
  sendRefusalOnSocket(socket, refuse('GH_UNAUTHENTICATED_CONNECTION', 'no connection context'));
}

/** A plain HTTP request on an endpoint that takes only an upgrade: it is not a route, whatever routes.yaml says. */
function upgradeRequired(sinks: ExchangeSinks, conn: ConnectionContext, req: IncomingMessage, res: ServerResponse, reserved: Extract<ReservedPath, { kind: 'tunnel' | 'publish' | 'udp' }>): void {
  const method = req.method ?? '';
  if (reserved.kind === 'udp') {
    // RFC 9298 §3.2: a CONNECT-UDP request is an upgrade; anything else on its template is not one.
    refuseUncounted(conn, sinks, { protocol: 'udp', method, target: redactTarget((req.url ?? '').slice(0, 200)), decision: 'deny', status: 426, reason: 'UDP endpoint needs an upgrade to connect-udp or websocket' });
    res.setHeader('upgrade', 'connect-udp');
    return sendRefusal(res, refuse('GH_UPGRADE_REQUIRED', 'UDP endpoint needs an upgrade', { clientReason: 'UDP endpoint needs Upgrade: connect-udp (or websocket)' }));
  }
  if (reserved.kind === 'tunnel') {
    refuseUncounted(conn, sinks, { protocol: 'http', method, target: redactTarget((req.url ?? '').slice(0, 200)), decision: 'deny', status: 426, reason: 'tunnel endpoint needs a WebSocket upgrade' });
    res.setHeader('upgrade', 'websocket');
    return sendRefusal(res, refuse('GH_UPGRADE_REQUIRED', 'tunnel endpoint needs a WebSocket upgrade'));
  }
  refuseUncounted(conn, sinks, { protocol: 'http', method, path: PUBLISH_PATH, decision: 'deny', status: 426, reason: 'publish endpoint needs an upgrade to ' + PUBLISH_PROTOCOL });
  res.setHeader('upgrade', PUBLISH_PROTOCOL);
  sendRefusal(res, refuse('GH_UPGRADE_REQUIRED', 'publish endpoint needs an upgrade', { clientReason: `publish endpoint needs Upgrade: ${PUBLISH_PROTOCOL}` }));
}

/** The gateway's pages take no upgrade, and a route never gets one on their paths: refused here. */
function refusePageUpgrade(sinks: ExchangeSinks, conn: ConnectionContext, req: IncomingMessage, socket: Duplex, page: PortalPage): void {
  socket.on('error', ignoreSocketErrors);
  const exchange = openExchange(conn, sinks, { protocol: 'http' });
  exchange.close({ event: 'request', protocol: 'websocket', method: req.method ?? '', path: page.path, decision: 'deny', status: 404, reason: 'gateway pages take no upgrade' }, 'refused');
  sendRefusalOnSocket(socket, refuse('GH_NO_PAGE', 'gateway pages take no upgrade'));
}

/**
 * The listener's handlers: reserved paths first (judged on the normalized path), then routes. Each way in
 * gets the connection's context from here; a connection without one (never authenticated) goes no further.
 */
export function dispatchTo(to: DispatchTargets): ListenerHandlers {
  return {
    certificateless: certificatelessTo(to),
    request(req, res, conn) {
      if (!conn) return sendRefusal(res, refuse('GH_UNAUTHENTICATED_CONNECTION', 'no connection context'));
      const reserved = reservedPath(req.url);
      if (reserved === undefined) return enter(to.http, conn, to.http.arrive(req, res));
      if (reserved.kind === 'portal') return enter(to.portal, conn, to.portal.arrive(req, res, reserved));
      return upgradeRequired(to.sinks, conn, req, res, reserved);
    },
    // The same decision as for a request: a reserved path never reaches a route, whichever way it comes in.
    upgrade(req, socket, head, conn) {
      if (!conn) return refuseUnauthenticated(socket);
      const reserved = reservedPath(req.url);
      if (reserved === undefined) return enter(to.websocket, conn, to.websocket.arrive(req, socket, head));
      if (reserved.kind === 'tunnel') return enter(to.tunnelEndpoint, conn, to.tunnelEndpoint.arrive(req, socket, head, reserved.routeName));
      if (reserved.kind === 'publish') return enter(to.publish, conn, to.publish.arrive(req, socket));
      if (reserved.kind === 'udp') return enter(to.udp, conn, to.udp.arrive(req, socket, head, reserved));
      return refusePageUpgrade(to.sinks, conn, req, socket, reserved);
    },
    connect(req, socket, head, conn) {
      if (!conn) return refuseUnauthenticated(socket);
      return enter(to.connect, conn, to.connect.arrive(req, socket, head));
    },
    stream: dispatchStream(to),
  };
}
