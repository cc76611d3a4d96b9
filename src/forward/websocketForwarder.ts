// WebSocket upgrades on HTTP routes that allow `websocket`: admitted like HTTP (protocol "websocket"),
// the upgrade is replayed to the upstream with the verified identity headers, then bytes are spliced.
import { request, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WayIn } from '../exchange/wayIn.ts';
import { refuse, refusalOf } from '../errors/refusal.ts';
import type { Side } from './byteSplice.ts';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './upstreamHeaders.ts';
import { closeFrame, watchForCloseFrame } from './websocketFrames.ts';
import { ignoreSocketErrors } from './refusals.ts';
import { allowHalfOpen, type AdmittedTunnel, type TunnelDeps } from './tunnelSession.ts';
import { malformed, tunnelWayIn, type TunnelArrival } from './tunnelWayIn.ts';

/** An upstream's refusal of the upgrade is passed on to the client, body cut at this size. */
const REFUSAL_BODY_LIMIT = 64 << 10;

/** Header lines of a response head, from the fields upstreamHeaders.ts lets through. */
function headLines(headers: Record<string, string | string[]>): string[] {
  return Object.entries(headers).flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((v) => `${name}: ${v}`));
}

/** Sends the upstream's non-101 answer to the client (status, headers, bounded body) and closes. */
function passRefusalBack(res: IncomingMessage, socket: Duplex, done: () => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  res.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    size += chunk.length;
    // A refusal that keeps streaming (an event stream, say) is cut at the limit, not read forever.
    if (size >= REFUSAL_BODY_LIMIT) send();
  });
  let sent = false;
  // Neither a slow upstream nor a client that left may hold both sockets open.
  const timer = setTimeout(() => send(), 10_000);
  const send = () => {
    if (sent) return;
    sent = true;
    clearTimeout(timer);
    socket.removeListener('close', send);
    const body = Buffer.concat(chunks).subarray(0, REFUSAL_BODY_LIMIT);
    const lines = [`HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}`, ...headLines(downstreamResponseHeaders(res.rawHeaders, { upgrade: true }))];
    lines.push(`content-length: ${body.length}`, 'connection: close');
    if (!socket.destroyed) {
      socket.resume();
      socket.end(Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n'), body]));
      setTimeout(() => socket.destroy(), 2_000).unref();
    }
    res.socket?.destroy();
    done();
  };
  res.once('end', send);
  res.once('error', send);
  res.once('close', send);
  socket.once('close', send);
}

/** Replays the (already rewritten) upgrade request on `upstreamSocket` and splices on 101. */
function replayUpgrade(tunnel: AdmittedTunnel, req: IncomingMessage, socket: Duplex, head: Buffer, upstreamSocket: Duplex, headers: Record<string, string | string[]>): void {
  let settled = false;
  const settle = () => {
    const first = !settled;
    settled = true;
    clearTimeout(timer);
    socket.removeListener('close', clientLeft);
    return first;
  };
  const proxyReq = request({
    createConnection: () => upstreamSocket,
    method: req.method ?? 'GET',
    path: tunnel.admission.upstreamTarget,
    headers,
  });
  const timer = setTimeout(() => proxyReq.destroy(new Error(`no answer to the upgrade within ${tunnel.connectTimeoutMs} ms`)), tunnel.connectTimeoutMs);
  const clientLeft = () => {
    if (!settle()) return;
    proxyReq.destroy();
    upstreamSocket.destroy();
    tunnel.fail('client closed before the tunnel opened');
  };
  socket.once('close', clientLeft);

  proxyReq.on('error', (err: NodeJS.ErrnoException) => {
    if (!settle()) return;
    upstreamSocket.destroy();
    const reason = `upstream error: ${err.code ?? err.message}`;
    tunnel.fail(reason, refuse('GH_UPSTREAM_UNAVAILABLE', reason));
  });
  proxyReq.on('response', (res) => {
    if (!settle()) return void res.destroy();
    passRefusalBack(res, socket, () => tunnel.fail(`upstream refused the upgrade with ${res.statusCode}`, res.statusCode ?? 502));
  });
  proxyReq.on('upgrade', (res, upSocket, upHead) => {
    if (!settle()) return void upSocket.destroy();
    const lines = [`HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}`, ...headLines(downstreamResponseHeaders(res.rawHeaders, { upgrade: true })), 'connection: Upgrade', 'upgrade: websocket'];
    socket.write(lines.join('\r\n') + '\r\n\r\n');
    // Whoever sends the first close frame ended the conversation (the server always closes TCP first).
    const watchers = { client: watchForCloseFrame(), upstream: watchForCloseFrame() };
    let closer: Side | undefined;
    const inspect = (from: Side, chunk: Buffer) => {
      if (closer) return;
      watchers[from].scan(chunk);
      if (watchers[from].sawClose) closer = from;
    };
    // Ended by the gateway (shutdown, revocation) between two frames to the client: it gets a close frame saying why, not a bare cut.
    const farewell = (reason: string, code: number) => (closer === undefined && watchers.upstream.atFrameBoundary ? closeFrame(code, reason) : undefined);
    tunnel.run({ client: socket, upstream: upSocket, clientHead: head, upstreamHead: upHead, inspect, closedBy: () => closer, farewell }, 101);
  });
  proxyReq.end();
}

/** A WebSocket upgrade on a route: checked as a handshake, admitted like HTTP, replayed to the upstream. */
export function createWebSocketForwarder(deps: TunnelDeps): { wayIn: WayIn<[IncomingMessage, Duplex, Buffer], TunnelArrival, 'route'> } {
  const wayIn = tunnelWayIn<[IncomingMessage, Duplex, Buffer], TunnelArrival>(deps, {
    arrive(req, socket, head) {
      socket.on('error', ignoreSocketErrors); // the HTTP server let go of the socket; the splice records its errors
      allowHalfOpen(socket);
      const method = req.method ?? 'GET';
      const target = req.url ?? '';
      return { req, socket, head, ask: { protocol: 'websocket', method, hostHeader: req.headers.host, target }, fields: { protocol: 'websocket', method, target, transport: 'websocket' }, tokenHeaders: ['authorization', 'cookie'] };
    },
    screen({ req }) {
      const method = req.method ?? 'GET';
      // RFC 6455 4.1: the opening handshake is a GET; anything else is not a WebSocket, whatever it claims.
      if (method !== 'GET') {
        return malformed(refuse('GH_UPGRADE_NOT_GET', `upgrade to websocket with method ${JSON.stringify(method.slice(0, 20))}`), { protocol: 'http', method: method.slice(0, 20), target: (req.url ?? '').slice(0, 200) });
      }
      if (req.headers.upgrade?.toLowerCase() === 'websocket') return undefined;
      const offered = String(req.headers.upgrade ?? '').slice(0, 100);
      return malformed(refuse('GH_BAD_UPGRADE', `upgrade to ${JSON.stringify(offered)} is not supported`), { protocol: 'http', method, target: (req.url ?? '').slice(0, 200) });
    },
    async carry({ req, socket, head }, tunnel) {
      const { conn } = tunnel.exchange;
      const { route, decision } = tunnel.admission;
      const caller = { identity: conn.identity, sourceIp: conn.sourceIp, user: decision.user, groups: decision.groups, route: route.config.name };
      const headers = upstreamRequestHeaders(req.rawHeaders, { caller, keepToken: route.config.forwardToken, framing: { kind: 'none' }, upgrade: 'websocket' });
      const upstream = await tunnel.openUpstream();
      if (!upstream.ok) return tunnel.fail(`upstream error: ${upstream.reason}`, refusalOf(upstream));
      if (socket.destroyed) {
        upstream.stream.destroy();
        return tunnel.fail('client closed before the tunnel opened');
      }
      replayUpgrade(tunnel, req, socket, head, upstream.stream, headers);
    },
  });
  return { wayIn };
}
