// Raw TCP tunnels to `protocols: [tcp]` routes, two ways in: HTTP CONNECT (`CONNECT <route>:<port>`) and
// the WebSocket tunnel endpoint (GET /.well-known/gatehouse/tunnel/<route>, subprotocol gatehouse-tunnel.v1).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Refused } from '../exchange/admit.ts';
import type { WayIn } from '../exchange/wayIn.ts';
import { tunnelEndpointPath } from '../tunnel/tunnelProtocol.ts';
import { MAX_MESSAGE_BYTES, TUNNEL_SUBPROTOCOL, TunnelStream, type TunnelStreamOptions } from '../tunnel/tunnelProtocol.ts';
import { refuse, refusalOf } from '../errors/refusal.ts';
import { ignoreSocketErrors } from './refusals.ts';
import { sharedReads } from './sharedReads.ts';
import { allowHalfOpen, type TunnelDeps } from './tunnelSession.ts';
import { malformed, tunnelWayIn, type TunnelArrival } from './tunnelWayIn.ts';

/** The gateway answers the WebSocket and audits it: the client ends it, and the splice judges how (see TunnelStreamOptions). */
const GATEWAY_SIDE: TunnelStreamOptions = { closeAfterBothEof: false, peerCloseIsEnd: false, sendErrorDestroys: false };

/** `route:port` (the port is ignored), or a bare `route`; anything else is malformed. */
export function connectTargetRoute(target: string): string | undefined {
  const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*)(?::\d{1,5})?$/.exec(target);
  return m?.[1];
}

/** What ws itself would reject, checked before an upstream is opened for nothing. */
function isWebSocketHandshake(req: IncomingMessage): boolean {
  const key = req.headers['sec-websocket-key'];
  const version = req.headers['sec-websocket-version'];
  return req.method === 'GET' && req.headers.upgrade?.toLowerCase() === 'websocket' &&
    typeof key === 'string' && /^[+/0-9A-Za-z]{22}==$/.test(key) && (version === '13' || version === '8');
}

/** A CONNECT request: the target names the route (`<route>:<port>`), the socket carries the bytes. */
function connectWayIn(deps: TunnelDeps): WayIn<[IncomingMessage, Duplex, Buffer], TunnelArrival, 'route'> {
  return tunnelWayIn(deps, {
    arrive(req, socket, head) {
      socket.on('error', ignoreSocketErrors); // the HTTP server let go of the socket; errors are handled by whoever carries it
      allowHalfOpen(socket);
      const target = req.url ?? '';
      const routeName = connectTargetRoute(target) ?? '';
      return { req, socket, head, ask: { protocol: 'tcp', routeName }, fields: { protocol: 'tcp', method: 'CONNECT', target: target.slice(0, 300), transport: 'connect' }, tokenHeaders: ['proxy-authorization', 'authorization'] };
    },
    screen(t) {
      const target = t.req.url ?? '';
      if (connectTargetRoute(target) !== undefined) return undefined;
      return malformed(refuse('GH_BAD_CONNECT_TARGET', `malformed CONNECT target ${JSON.stringify(target.slice(0, 200))}`), { protocol: 'tcp', method: 'CONNECT', target: target.slice(0, 200) });
    },
    async carry({ socket, head }, tunnel) {
      // The client is the TLS socket itself, which encrypts what it is given on write: the upstream can
      // read into the shared buffer (see byteSplice's upstreamReads).
      const reads = sharedReads();
      const upstream = await tunnel.openUpstream({ onread: reads.onread });
      if (!upstream.ok) return tunnel.fail(`upstream error: ${upstream.reason}`, refusalOf(upstream));
      if (socket.destroyed) {
        upstream.stream.destroy();
        return tunnel.fail('client closed before the tunnel opened');
      }
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      tunnel.run({ client: socket, upstream: upstream.stream, clientHead: head, upstreamReads: reads }, 200);
    },
  });
}

/** The tunnel endpoint's early checks: a WebSocket handshake offering the tunnel's subprotocol (or none). */
function screenTunnelEndpoint({ req }: TunnelArrival): Refused | undefined {
  const early = { protocol: 'tcp' as const, method: req.method ?? '', target: (req.url ?? '').slice(0, 200) };
  if (!isWebSocketHandshake(req)) return malformed(refuse('GH_BAD_HANDSHAKE', 'tunnel endpoint without a valid WebSocket handshake'), early);
  // A client offering only other subprotocols would not speak the tunnel's framing: refuse before any
  // upstream is opened. (Offering none stays allowed: the endpoint has always accepted that.)
  const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  if (offered.length > 0 && !offered.includes(TUNNEL_SUBPROTOCOL)) {
    return malformed(refuse('GH_BAD_SUBPROTOCOL', `tunnel endpoint without subprotocol ${TUNNEL_SUBPROTOCOL} (offered ${JSON.stringify(offered.join(',').slice(0, 100))})`, { clientReason: `expected subprotocol ${TUNNEL_SUBPROTOCOL}` }), early);
  }
  return undefined;
}

export function createTunnelForwarder(deps: TunnelDeps) {
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    perMessageDeflate: false,
    maxPayload: MAX_MESSAGE_BYTES,
    handleProtocols: (offered) => (offered.has(TUNNEL_SUBPROTOCOL) ? TUNNEL_SUBPROTOCOL : false),
  });

  /** An upgrade dispatch found on the tunnel endpoint, naming `routeName` ('' when none). */
  const tunnelEndpoint = tunnelWayIn<[IncomingMessage, Duplex, Buffer, string], TunnelArrival>(deps, {
    arrive(req, socket, head, routeName) {
      socket.on('error', ignoreSocketErrors);
      const path = tunnelEndpointPath(routeName);
      const fields = { protocol: 'tcp' as const, method: 'GET', path: path.slice(0, 300), ...(req.url !== path && { target: (req.url ?? '').slice(0, 300) }), transport: 'websocket-tunnel' };
      return { req, socket, head, ask: { protocol: 'tcp', routeName }, fields, tokenHeaders: ['authorization'] };
    },
    screen: screenTunnelEndpoint,
    async carry({ req, socket, head }, tunnel) {
      const upstream = await tunnel.openUpstream();
      if (!upstream.ok) return tunnel.fail(`upstream error: ${upstream.reason}`, refusalOf(upstream));
      // ws answers a handshake it dislikes itself and never calls back: then the socket closes, and so must the upstream.
      let upgraded = false;
      const abandon = () => {
        if (upgraded) return;
        upgraded = true;
        upstream.stream.destroy();
        tunnel.fail('client closed before the tunnel opened');
      };
      if (socket.destroyed) return abandon();
      socket.once('close', abandon);
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (upgraded) return void ws.terminate();
        upgraded = true;
        socket.removeListener('close', abandon);
        tunnel.run({ client: new TunnelStream(ws, GATEWAY_SIDE), upstream: upstream.stream }, 101);
      });
    },
  });

  return {
    connect: connectWayIn(deps),
    tunnelEndpoint,
    close(): void {
      wss.close();
    },
  };
}
