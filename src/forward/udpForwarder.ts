// UDP flows to `protocols: [udp]` routes (RFC 9298): DATAGRAM capsules after an HTTP/1.1 `Upgrade: connect-udp`
// or on an HTTP/2 extended CONNECT stream, or a WebSocket (gatehouse-udp.v1, a datagram per binary message).
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { auditTokenOf } from '../audit/auditToken.ts';
import type { UdpPath } from '../exchange/dispatch.ts';
import type { Refused } from '../exchange/admit.ts';
import type { WayIn } from '../exchange/wayIn.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import { openDatagramTarget } from '../upstream/udpUpstream.ts';
import { CapsuleChannel, CONNECT_UDP, MAX_UDP_PAYLOAD, UDP_SUBPROTOCOL, WebSocketChannel, type DatagramChannel } from '../tunnel/udpChannel.ts';
import { udpEndpointPath } from '../routing/reservedPaths.ts';
import { ignoreSocketErrors, sendRefusalOnSocket } from './refusals.ts';
import { DEFAULT_CONNECT_TIMEOUT_SECONDS, type TunnelDeps } from './tunnelSession.ts';
import { answerRefusal, closeRefused, malformed, rawWayIn, type RawArrival } from './tunnelWayIn.ts';
import { openUdpFlow } from './udpFlow.ts';
import { UdpIdentities } from './udpLimits.ts';
import { acceptOverH2, screenH2, type UdpOverH2 } from './udpOverH2.ts';
import { withProxyStatus } from './udpProxyStatus.ts';

/** Room for this many full-size datagrams waiting on the client's connection, each with its framing. */
const queueBytesFor = (packets: number, maxDatagramBytes: number) => packets * (maxDatagramBytes + 16);

/** A flow's answer to the client and its channel, on the transport it came by; `gone` if the client left first. */
export type AcceptFlow = (queueBytes: number, run: (channel: DatagramChannel, status: number) => void, gone: () => void) => void;

export interface UdpArrival extends RawArrival {
  /** `connect-udp` (capsules, HTTP/1.1), `h2-connect-udp` (capsules, HTTP/2) or `websocket-udp`; '' for an upgrade to anything else. */
  upgrade: 'connect-udp' | 'h2-connect-udp' | 'websocket-udp' | '';
  /** The RFC 9298 template's target, when the request named one instead of a route. */
  target?: { host: string; port: string };
  accept: AcceptFlow;
}

/** What every arrival says of the request, from its UDP path (a route's, or the template's target). */
export function udpAsk(deps: TunnelDeps, path: UdpPath, method: string, url: string, transport: UdpArrival['upgrade']): Pick<UdpArrival, 'ask' | 'fields' | 'tokenHeaders' | 'target'> {
  const target = 'target' in path ? path.target : undefined;
  const routeName = 'routeName' in path ? path.routeName : (validTarget(path.target) && routeForTarget(deps.admission(), path.target)) || '';
  const named = 'routeName' in path ? udpEndpointPath(routeName) : undefined;
  const fields = { protocol: 'udp' as const, method, ...(named !== undefined && { path: named.slice(0, 300) }), ...(url !== named && { target: url.slice(0, 300) }), transport };
  return { ask: { protocol: 'udp', routeName }, fields, tokenHeaders: ['authorization', 'proxy-authorization'], ...(target && { target }) };
}

/**
 * The route a template target reaches: the first `protocols: [udp]` route (in config order) whose upstream is
 * exactly `udp:<host>:<port>`. A route is the policy for one address; the template cannot name any other.
 */
export function routeForTarget(admission: AdmissionContext, target: { host: string; port: string }): string | undefined {
  const host = target.host.includes(':') ? `[${target.host.toLowerCase()}]` : target.host.toLowerCase();
  const upstream = `udp:${host}:${target.port}`;
  return admission.routes.list().find((r) => r.config.protocols.includes('udp') && r.config.upstream.toLowerCase() === upstream)?.config.name;
}

/** RFC 9298 §3: a host is a name or an IP literal, a port 1-65535 in decimal. */
export function validTarget({ host, port }: { host: string; port: string }): boolean {
  return /^[A-Za-z0-9.:_-]{1,253}$/.test(host) && /^[1-9]\d{0,4}$/.test(port) && Number(port) <= 65535;
}

const badTarget = (early: Parameters<typeof malformed>[1]) => malformed(refuse('GH_BAD_REQUEST', 'CONNECT-UDP target is not a host and port', { clientReason: 'invalid target_host or target_port' }), early);

function screenUdp(t: UdpArrival): Refused | undefined {
  const early = { protocol: 'udp' as const, method: t.req.method ?? '', target: (t.req.url ?? '').slice(0, 200) };
  if (t.upgrade === 'h2-connect-udp') return screenH2(t.req.headers, early) ?? (t.target && !validTarget(t.target) ? badTarget(early) : undefined);
  if (t.upgrade === '') return malformed(refuse('GH_BAD_UPGRADE', `UDP endpoint upgrade to ${JSON.stringify(String(t.req.headers.upgrade ?? '').slice(0, 40))}`, { clientReason: 'expected Upgrade: connect-udp or websocket' }), early);
  if (t.req.method !== 'GET') return malformed(refuse('GH_UPGRADE_NOT_GET', `UDP upgrade with method ${JSON.stringify(early.method.slice(0, 20))}`, { clientReason: 'UDP upgrade must be GET' }), early);
  if (t.target && !validTarget(t.target)) return badTarget(early);
  if (t.upgrade === 'connect-udp') {
    // RFC 9297 §3.4: the capsule protocol is on with `?1`; a client that says `?0` would not speak it.
    const capsules = t.req.headers['capsule-protocol'];
    if (capsules !== undefined && String(capsules).trim() !== '?1') return malformed(refuse('GH_BAD_UPGRADE', `Capsule-Protocol ${JSON.stringify(String(capsules).slice(0, 20))}`, { clientReason: 'expected Capsule-Protocol: ?1' }), early);
    return undefined;
  }
  const key = t.req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || !/^[+/0-9A-Za-z]{22}==$/.test(key) || t.req.headers['sec-websocket-version'] !== '13') return malformed(refuse('GH_BAD_HANDSHAKE', 'UDP endpoint without a valid WebSocket handshake'), early);
  const offered = String(t.req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
  if (!offered.includes(UDP_SUBPROTOCOL)) return malformed(refuse('GH_BAD_SUBPROTOCOL', `UDP endpoint without subprotocol ${UDP_SUBPROTOCOL}`, { clientReason: `expected subprotocol ${UDP_SUBPROTOCOL}` }), early);
  return undefined;
}

export function createUdpForwarder(deps: TunnelDeps) {
  const identities = new UdpIdentities();
  const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false, maxPayload: MAX_UDP_PAYLOAD, handleProtocols: (offered) => (offered.has(UDP_SUBPROTOCOL) ? UDP_SUBPROTOCOL : false) });

  /** HTTP/1.1: RFC 9298 §3.3's 101 and capsules on the connection, or the WebSocket handshake. */
  const acceptOverHttp1 = (req: IncomingMessage, socket: Duplex, head: Buffer, upgrade: UdpArrival['upgrade']): AcceptFlow => (queueBytes, run, gone) => {
    if (upgrade === 'connect-udp') {
      // RFC 9298 §3.3: 101 with the upgrade token, and the capsule protocol on (RFC 9297 §3.4).
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CONNECT_UDP}\r\nCapsule-Protocol: ?1\r\n\r\n`);
      return run(new CapsuleChannel(socket, queueBytes, head), 101);
    }
    // ws answers a handshake it dislikes itself and never calls back: then the socket closes, and so must the flow.
    let upgraded = false;
    const abandon = () => {
      if (upgraded) return;
      upgraded = true;
      gone();
    };
    socket.once('close', abandon);
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (upgraded) return void ws.terminate();
      upgraded = true;
      socket.removeListener('close', abandon);
      run(new WebSocketChannel(ws, queueBytes), 101);
    });
  };

  /** Admitted: the identity's flow slot, the upstream, then the answer and the flow on the client's transport. */
  const carry: WayIn<unknown[], UdpArrival, 'route'>['carry'] = async (t, exchange, admitted) => {
    const admission = admitted.decided;
    const token = auditTokenOf(admission.decision);
    const route = admission.route.config.name;
    if (!deps.tunnels.accepting || t.socket.destroyed) return closeRefused(t, exchange, refuse('GH_DRAINING', t.socket.destroyed ? 'client left during admission' : 'gateway shutting down'), { route, token });
    const limits = deps.limits().udp;
    const slot = identities.reserve(admission.decision.user, limits);
    if (!slot.ok) return closeRefused(t, exchange, refuse('GH_RATE_LIMITED', slot.reason, { headers: { 'retry-after': 1 } }), { route, token });
    const flow = openUdpFlow({ exchange, admission, token, transport: t.upgrade, limits, shared: slot.shared, release: slot.release, registry: deps.tunnels });
    const queueBytes = queueBytesFor(limits.queuePackets, limits.maxDatagramBytes);
    const opened = await openDatagramTarget(admission.upstream, Math.round((admission.route.config.connectTimeoutSeconds ?? DEFAULT_CONNECT_TIMEOUT_SECONDS) * 1000), { streams: deps.upstreams, queueBytes });
    if (!opened.ok) {
      const refusal = refusalOf(opened);
      answerRefusal(t, refusal);
      return flow.fail(`upstream error: ${refusal.reason}`, refusal.status);
    }
    if (t.socket.destroyed) {
      opened.upstream.close();
      return flow.fail('client closed before the flow opened');
    }
    const gone = () => {
      opened.upstream.close();
      flow.fail('client closed before the flow opened');
    };
    t.accept(queueBytes, (channel, status) => flow.run(channel, opened.upstream, status), gone);
  };

  /** Every UDP refusal says what kind of error it is (RFC 9209 Proxy-Status), whatever the transport. */
  const withStatus = <T extends UdpArrival>(t: T, answer: (refusal: Refusal) => void): T => Object.assign(t, { answer: (refusal: Refusal) => answer(withProxyStatus(refusal)) });

  const wayIn = rawWayIn<[IncomingMessage, Duplex, Buffer, UdpPath], UdpArrival>(
    deps,
    {
      arrive(req, socket, head, path) {
        socket.on('error', ignoreSocketErrors);
        const asked = String(req.headers.upgrade ?? '').toLowerCase();
        const upgrade = asked === CONNECT_UDP ? 'connect-udp' : asked === 'websocket' ? 'websocket-udp' : '';
        const arrival: UdpArrival = { req, socket, ...udpAsk(deps, path, req.method ?? '', req.url ?? '', upgrade), upgrade, accept: acceptOverHttp1(req, socket, head, upgrade) };
        return withStatus(arrival, (refusal) => sendRefusalOnSocket(socket, refusal));
      },
      screen: screenUdp,
    },
    carry,
  );

  /** RFC 9298 §3.5: the same flows as HTTP/2 extended CONNECT streams, through the same admission. */
  const h2WayIn = rawWayIn<[ServerHttp2Stream, IncomingHttpHeaders, UdpPath], UdpArrival>(
    deps,
    {
      arrive(stream, headers, path) {
        const h2: UdpOverH2 = acceptOverH2(stream);
        const url = String(headers[':path'] ?? '');
        const arrival: UdpArrival = { req: { headers, method: String(headers[':method'] ?? ''), url }, socket: stream, ...udpAsk(deps, path, 'CONNECT', url, 'h2-connect-udp'), upgrade: 'h2-connect-udp', accept: h2.accept };
        return withStatus(arrival, h2.refuse);
      },
      screen: screenUdp,
    },
    carry,
  );

  return {
    wayIn,
    h2WayIn,
    /** UDP flows open now for `identity` (tests, metrics). */
    flowsOf: (identity: string) => identities.flowsOf(identity),
    close(): void {
      wss.close();
    },
  };
}
