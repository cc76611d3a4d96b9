// HTTP/2 on the user listener, for RFC 9298 extended CONNECT alone: ALPN gives h2 only to a client that
// offers it without http/1.1; its session is served here (flood limits, idle timeout, GOAWAY at shutdown).
import { constants, createServer as createH2Server, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Server } from 'node:https';
import type { GatewayLimits } from '../config/schema.ts';
import { H2_SESSION_WINDOW_BYTES, H2_STREAM_WINDOW_BYTES } from '../tunnel/udpChannel.ts';

/**
 * ALPN: browsers, curl and every HTTP/1.1 client offer http/1.1 and keep it (the HTTP, WebSocket, tunnel and
 * portal paths are HTTP/1.1 code); only an HTTP/2-only client (a MASQUE client, `tunnel --transport http2`)
 * gets h2. A client offering neither is refused as before (no_application_protocol).
 */
export function selectAlpn({ protocols }: { protocols: string[] }): string | undefined {
  if (protocols.includes('http/1.1')) return 'http/1.1';
  return protocols.includes('h2') ? 'h2' : undefined;
}

/** Invalid frames (and refused streams) a session may send before it is closed: nghttp2's flood guards, tighter than Node's 1,000. */
const MAX_INVALID_FRAMES = 100;
const MAX_REJECTED_STREAMS = 100;

/** Sockets that negotiated h2 go to `h2`; every other one to the HTTPS server's own (HTTP/1.1) listener, as before. */
export function splitByAlpn(server: Server, h2: H2Sessions): void {
  const [http1, ...others] = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
  if (http1 === undefined || others.length > 0) throw new Error('the HTTPS server has not exactly one connection listener');
  server.removeListener('secureConnection', http1);
  server.on('secureConnection', (socket: TLSSocket) => (socket.alpnProtocol === 'h2' ? h2.take(socket) : http1.call(server, socket)));
}

/** `session` is the stream's own, taken when it arrived: Node clears `stream.session` once the stream is destroyed. */
export type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, socket: TLSSocket, session: ServerHttp2Session) => void;

export interface H2Sessions {
  /** Serves a TLS socket that negotiated h2 (its connection records are the listener's, as for HTTP/1.1). */
  take(socket: TLSSocket): void;
  /** Shutdown: GOAWAY on every session; the flows still open end through the tunnel registry. */
  goAway(): void;
  /** The shutdown deadline: every session is destroyed. */
  destroyAll(): void;
}

type Limits = Pick<GatewayLimits, 'idleTimeoutSeconds' | 'maxHeaderBytes' | 'udp'>;

export function serveH2(limits: Limits, onStream: StreamHandler): H2Sessions {
  const server = createH2Server({
    settings: {
      // RFC 8441 §3: extended CONNECT (the `:protocol` pseudo-header) is on.
      enableConnectProtocol: true,
      // One connection holds no more flows than its identity may (admission refuses past that anyway).
      maxConcurrentStreams: limits.udp.flowsPerIdentity,
      maxHeaderListSize: limits.maxHeaderBytes,
      // The gateway reads every stream at once (a datagram goes to its socket or is dropped): wide windows hold no memory.
      initialWindowSize: H2_STREAM_WINDOW_BYTES,
    },
    maxHeaderListPairs: 64,
    maxSessionInvalidFrames: MAX_INVALID_FRAMES,
    maxSessionRejectedStreams: MAX_REJECTED_STREAMS,
    maxOutstandingPings: 4,
  });
  const sessions = new Map<ServerHttp2Session, TLSSocket>();
  const idleMs = Math.max(1, Math.round(limits.idleTimeoutSeconds * 1000));
  let taking: TLSSocket | undefined;
  let closing = false;

  // Node makes the session synchronously inside the 'connection' event: that is where it meets its TLS
  // socket (session.socket is a guarded proxy, never the socket the connection context is kept under).
  server.on('session', (session: ServerHttp2Session) => {
    const socket = taking;
    if (!socket) return void session.destroy();
    sessions.set(session, socket);
    session.setLocalWindowSize(H2_SESSION_WINDOW_BYTES);
    // A peer's protocol errors end its own session, never the process.
    session.on('error', () => {});
    session.on('frameError', () => {});
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    // A session with no stream open for the listener's idle timeout is closed (GOAWAY), as an idle keep-alive is;
    // one that still holds a stream nghttp2 has not handed over (headers never finished) is destroyed after as long again.
    const armIdle = () => {
      idle = setTimeout(() => {
        session.close();
        setTimeout(() => session.destroy(), idleMs).unref();
      }, idleMs);
      idle.unref();
    };
    armIdle();
    session.on('stream', (stream: ServerHttp2Stream) => {
      open += 1;
      clearTimeout(idle);
      stream.once('close', () => {
        open -= 1;
        if (open === 0 && !session.closed && !session.destroyed) armIdle();
      });
    });
    session.once('close', () => {
      clearTimeout(idle);
      sessions.delete(session);
      // The session is gone: so is its connection (connection.close is written on the socket's close).
      socket.destroy();
    });
    if (closing) session.close();
  });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {});
    // The session is read here, in the event: a stream the peer reset in the same read has none by the time it is dispatched.
    const session = stream.session as ServerHttp2Session;
    const socket = sessions.get(session);
    if (!socket) return void stream.close(constants.NGHTTP2_REFUSED_STREAM);
    onStream(stream, headers, socket, session);
  });
  server.on('sessionError', () => {});

  return {
    take(socket) {
      taking = socket;
      try {
        server.emit('connection', socket as Socket);
      } finally {
        taking = undefined;
      }
    },
    goAway() {
      closing = true;
      for (const session of sessions.keys()) session.close();
    },
    destroyAll() {
      for (const session of sessions.keys()) session.destroy();
    },
  };
}
