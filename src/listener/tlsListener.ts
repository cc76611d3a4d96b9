// The front door: HTTPS servers on TCP addresses and UNIX sockets that demand a client certificate from the
// site CA, record who connected, and hand requests, upgrades, CONNECTs and HTTP/2 streams to the forwarders.
import cluster from 'node:cluster';
import { constants as cryptoConstants } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createServer, type Server } from 'node:https';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { constants as h2constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient } from '../audit/auditRecord.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { GatewayLimits, ListenAddress } from '../config/schema.ts';
import { certificatelessIdentity, peerIdentity } from '../tls/peerIdentity.ts';
import { trackConnection } from './connectionRecords.ts';
import { brokenOff, handleClientError } from './clientErrors.ts';
import type { ConnectionContext, ListenerHandlers } from '../exchange/connection.ts';
import type { TlsSettings } from '../tls/tlsSettings.ts';
import { certificatelessOf, contextOf, newConnectionId, rawConnectionOf, sourceOf } from './connectionContext.ts';
import type { ConnectionLimits } from './connectionLimits.ts';
import { destroyIdleSockets, releaseToTunnel, responseInFlight, serverTimeoutOptions, trackResponse } from './listenerTimeouts.ts';
import { createProxyFront, type ProxyRefusal } from './proxyFront.ts';
import { removeStaleSocket } from './staleSocket.ts';
import { selectAlpn, serveH2, splitByAlpn, type StreamHandler } from './h2Sessions.ts';

/** The secure-context part of `tls`, without our own keys, with renegotiation refused. */
function secureContextOf({ refuseClients: _refuse, ...tls }: TlsSettings): SecureContextOptions {
  return { ...tls, secureOptions: listenerSecureOptions };
}

/** Why a TLS handshake was refused, for metrics (gatehouse_tls_rejects_total{reason}). */
export type TlsRejectKind = 'revoked' | 'crl_unusable' | 'certificate' | 'no_certificate' | 'timeout' | 'handshake';

export interface BoundListener {
  server: Server;
  /** Authenticated connections still open: shutdown waits for their close records. */
  connections: Set<TLSSocket>;
  /** `127.0.0.1:8443` or the UNIX socket path. */
  address: string;
  port?: number;
  /** New certificate, key and CA (reload); the listener's own TLS options stay. */
  setTls(tls: TlsSettings): void;
  /** Destroys every socket that has not authenticated (shutdown): nothing is owed to them. */
  dropUnauthenticated(): void;
  /** Shutdown: every response not yet begun says `Connection: close` and ends its connection (HTTP/2: GOAWAY). */
  closeAfterResponses(): void;
  /** The shutdown deadline: every connection is closed, HTTP/1.1 and HTTP/2 alike. */
  closeAllConnections(): void;
}

export interface ListenerOptions {
  limits: GatewayLimits;
  /** Shared by every listener of the gateway, so the connection limits count them together. */
  connectionLimits: ConnectionLimits;
  /** Records of refused handshakes and connections, within their budgets (shared by every listener). */
  refusals: RefusalRecords;
  /** Counts connections refused by a `proxyProtocol` listener. */
  proxyRefused?(reason: ProxyRefusal): void;
  /** Counts refused handshakes (before their records' rate limit). */
  tlsRejected?(kind: TlsRejectKind): void;
  /**
   * Set when issuer.certificates is (at start): the handshake then asks for a client certificate without
   * requiring one, and a connection that presents none reaches the certificate login alone, while this says so.
   */
  certificateLogins?: () => boolean;
}

/** Client-initiated TLS 1.2 renegotiation costs the server a handshake per request of the client's choosing. */
const listenerSecureOptions = cryptoConstants.SSL_OP_NO_RENEGOTIATION;

/** Why a handshake failed, for tls.reject and its metric: OpenSSL's verification code, revocation said plainly. */
export function tlsRejectReason(err: NodeJS.ErrnoException, socket: TLSSocket): { kind: TlsRejectKind; reason: string } {
  // A certificate from another CA passes the handshake itself; Node then checks the chain, notes
  // why it failed in authorizationError and drops the socket, so that is the reason worth recording.
  const verifyError = socket.authorizationError ?? (/^(CERT|CRL)_[A-Z_]+$/.test(err.code ?? '') ? err.code : undefined);
  const code = String(verifyError ?? err.code ?? '');
  const said = code || err.message.trim();
  if (code.includes('CERT_REVOKED') || /certificate revoked/i.test(err.message)) return { kind: 'revoked', reason: `client certificate revoked (tls.crl): ${said}` };
  if (/CRL/.test(code) || /\bcrl\b/i.test(err.message)) return { kind: 'crl_unusable', reason: `client certificate revocation could not be checked (tls.crl): ${said}` };
  if (verifyError) return { kind: 'certificate', reason: `client certificate rejected: ${String(verifyError)}` };
  if (/peer did not return a certificate|PEER_DID_NOT_RETURN_A_CERTIFICATE/i.test(`${err.code} ${err.message}`)) return { kind: 'no_certificate', reason: `${err.code ?? 'TLS_ERROR'}: ${err.message.trim()}` };
  if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return { kind: 'timeout', reason: `${err.code}: ${err.message.trim()}` };
  return { kind: 'handshake', reason: `${err.code ?? 'TLS_ERROR'}: ${err.message.trim()}` };
}

/** Why a completed handshake has no verified identity: no certificate, or the chain check's verdict. */
function unverifiedReason(socket: TLSSocket): { kind: TlsRejectKind; reason: string } {
  if (socket.getPeerX509Certificate() === undefined) return { kind: 'no_certificate', reason: 'no client certificate presented' };
  const verdict = String(socket.authorizationError ?? 'UNABLE_TO_VERIFY');
  return tlsRejectReason(Object.assign(new Error(`client certificate not verified: ${verdict}`), { code: verdict }), socket);
}

/**
 * The HTTPS server itself: client certificates demanded, renegotiation refused, slow clients timed out.
 * With certificate logins a connection without a certificate completes the handshake (openConnections decides).
 */
function createTlsServer(tls: TlsSettings, limits: GatewayLimits, certificateLogins: boolean): Server {
  return createServer({
    ...secureContextOf(tls),
    requestCert: true,
    rejectUnauthorized: !certificateLogins,
    // Slow or silent clients must not hold sockets forever.
    ...serverTimeoutOptions(limits),
    // The HTTP forwarder answers a Host-less HTTP/1.1 request itself, with an audit record.
    requireHostHeader: false,
    // HTTP/1.1 to every client that offers it; h2 (CONNECT-UDP only) to a client that offers h2 alone.
    ALPNCallback: selectAlpn,
  });
}


/** Records every refused handshake (tls.reject, within its budgets) and counts it by kind. */
function recordTlsRejects(server: Server, options: ListenerOptions): void {
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    const raw = rawConnectionOf(socket);
    // Refused by a connection limit (already recorded) or dropped at shutdown: the reset is our own doing.
    if (raw?.dropped) return;
    // By now the TLS socket may be destroyed and have forgotten its peer; the record made on accept has not.
    const { source, sourceIp } = raw ?? sourceOf(socket);
    const { kind, reason } = tlsRejectReason(err, socket);
    options.tlsRejected?.(kind);
    options.refusals.write({ event: 'tls.reject', source, decision: 'deny', reason }, { source: sourceIp || source, kind });
  });
}

/**
 * After each handshake: refuses a client without a verified certificate (or every client while
 * `refuseClients()` says why), else makes the connection's context, writes connection.open and, on close,
 * connection.close. Returns the authenticated connections still open.
 */
function openConnections(server: Server, audit: AuditLog, options: ListenerOptions, refuseClients: () => string | undefined): Set<TLSSocket> {
  const connections = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    const identity = peerIdentity(socket);
    const { source, sourceIp, via } = sourceOf(socket);
    // No certificate at all (not a bad one) while certificate logins are on: a context the route handlers never see.
    const certificateless = !identity && socket.getPeerX509Certificate() === undefined && options.certificateLogins?.() === true;
    const refused = identity ? refuseClients() : undefined;
    if (!certificateless && (!identity || refused !== undefined)) {
      // Without rejectUnauthorized (certificate logins) a bad certificate is refused here, for the same reasons.
      const { kind, reason } = identity ? { kind: 'crl_unusable' as const, reason: refused } : unverifiedReason(socket);
      options.tlsRejected?.(kind);
      options.refusals.write({ event: 'tls.reject', source, ...(identity && { client: auditClient(identity) }), decision: 'deny', reason }, { source: sourceIp || source, ...(identity && { identity: identity.fingerprint }), kind });
      socket.destroy();
      return;
    }
    const context: ConnectionContext = { id: newConnectionId(), identity: identity ?? certificatelessIdentity(sourceIp), source, sourceIp, openedAt: performance.now(), requests: 0, inFlight: new Set() };
    trackConnection(socket, context, { audit, connections, certificateless, ...(via && { via }) });
  });
  return connections;
}

/**
 * Hands each request, upgrade and CONNECT to `handlers` with its connection's context (looked up here, the
 * only place that does). Returns the switch that makes every later response end its connection (shutdown).
 */
function handRequestsDown(server: Server, handlers: ListenerHandlers, audit: AuditLog, options: ListenerOptions): { onStream: StreamHandler; closeConnections: () => void } {
  // A handler that throws must never take the gateway down or touch other connections.
  // It runs a microtask after the server's event, not inside it: by then the parser has gone through
  // the bytes it holds, so a request it refuses mid-way (a bad Transfer-Encoding, a broken chunk, the
  // next pipelined request over a limit) is known to the handler first (test/hostile/smuggling.test.ts).
  const guard = <A extends unknown[]>(fn: (...args: A) => void | Promise<void>, onFail: (...args: A) => void) =>
    (...args: A) => {
      Promise.resolve()
        .then(() => fn(...args))
        .catch((err: unknown) => {
          audit.write({ event: 'request', reason: `internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`, status: 500 });
          onFail(...args);
        });
    };
  // Once shutdown began, a response says close and its connection ends after it (RFC 9112 9.6): a client
  // told so never sends another request on a connection the drain is closing. Node's server.close() does
  // not do this itself (Node 24 keeps answering keep-alive on the connections it has).
  let closingConnections = false;
  const onRequest = guard(
    (req: IncomingMessage, res: ServerResponse) => {
      trackResponse(req, res);
      if (closingConnections) res.shouldKeepAlive = false;
      // The parser may hand over a request whose header block was refused (an invalid Transfer-Encoding):
      // answered and recorded already, there is nothing left to decide.
      if (brokenOff(req.socket)) return void res.destroy();
      const conn = contextOf(req.socket);
      // Only a socket with no context of its own can be a certificate-less one (a map apart: see trackConnection).
      const bare = conn === undefined ? certificatelessOf(req.socket) : undefined;
      if (bare !== undefined && handlers.certificateless) return handlers.certificateless.request(req, res, bare);
      return handlers.request(req, res, conn);
    },
    (_req, res) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"internal error"}\n');
      else res.destroy();
    },
  );
  server.on('request', onRequest);
  // Expect is decided by the request handler, after authorization: Node would send 100 Continue (or
  // 417) to anyone first.
  server.on('checkContinue', onRequest);
  server.on('checkExpectation', onRequest);
  const onTunnel = (kind: 'upgrade' | 'connect') =>
    guard(
      (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        releaseToTunnel(socket as Socket);
        const conn = contextOf(socket as Socket);
        const bare = conn === undefined ? certificatelessOf(socket as Socket) : undefined;
        if (bare !== undefined && handlers.certificateless) return handlers.certificateless[kind](req, socket, head, bare);
        return handlers[kind](req, socket, head, conn);
      },
      (_req, socket) => socket.destroy(),
    );
  server.on('upgrade', onTunnel('upgrade'));
  server.on('connect', onTunnel('connect'));
  // An HTTP/2 stream (CONNECT-UDP): a certificate-less connection has no context here, and dispatch refuses it.
  const onStream = guard<[ServerHttp2Stream, IncomingHttpHeaders, TLSSocket, ServerHttp2Session]>(
    (stream, headers, socket, session) => handlers.stream(stream, headers, contextOf(socket), session),
    (stream) => stream.close(h2constants.NGHTTP2_INTERNAL_ERROR),
  );
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => handleClientError(err, socket, options.refusals, options.limits));
  return {
    onStream,
    closeConnections: () => {
      closingConnections = true;
    },
  };
}

/** Listens on the UNIX socket (created with its final mode) or the TCP address; returns the address bound. */
async function bind(listen: ListenAddress, server: Server, acceptor: Server | NetServer): Promise<{ address: string; port?: number }> {
  if (listen.unix) {
    await mkdir(dirname(listen.unix), { recursive: true, mode: 0o755 });
    // Under `serve --processes` the primary binds the socket once for all processes and removed any stale file first.
    if (!cluster.isWorker) await removeStaleSocket(listen.unix);
    const mode = parseInt(listen.mode ?? '0660', 8);
    // Create the socket file with its final mode (no window where it is wider), then chmod to be sure.
    const umask = process.umask(0o777 & ~mode);
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(listen.unix, () => resolve()));
    } finally {
      process.umask(umask);
    }
    await chmod(listen.unix, mode);
    return { address: listen.unix };
  }
  const [, host, port] = /^\[?(.*?)\]?:(\d+)$/.exec(listen.tcp ?? '') ?? [];
  await new Promise<void>((resolve, reject) => acceptor.once('error', reject).listen(Number(port), host, () => resolve()));
  const address = acceptor.address();
  const boundPort = typeof address === 'object' && address ? address.port : Number(port);
  return { address: `${host?.includes(':') ? `[${host}]` : host}:${boundPort}`, port: boundPort };
}

export async function openListener(listen: ListenAddress, tls: TlsSettings, handlers: ListenerHandlers, audit: AuditLog, options: ListenerOptions): Promise<BoundListener> {
  const { limits } = options;
  let refuseClients = tls.refuseClients;
  const server = createTlsServer(tls, limits, options.certificateLogins !== undefined);
  // With proxyProtocol a plain TCP server accepts, reads the balancer's header, then hands the socket to
  // the TLS server: the header must be consumed before the first TLS byte is read.
  const front = listen.proxyProtocol
    ? createProxyFront(server, { trusted: listen.proxyProtocol.trusted, headerTimeoutMs: Math.max(1, limits.handshakeTimeoutSeconds * 1000), refusals: options.refusals, refused: options.proxyRefused })
    : undefined;
  const acceptor = front?.server ?? server;
  // Closing the TLS server (shutdown) stops the front from accepting too.
  if (front) server.once('close', () => front.server.close());
  const held = options.connectionLimits.watch(server, acceptor);
  destroyIdleSockets(server, limits);
  recordTlsRejects(server, options);
  const { onStream, closeConnections } = handRequestsDown(server, handlers, audit, options);
  const h2 = serveH2(limits, onStream);
  splitByAlpn(server, h2);
  const connections = openConnections(server, audit, options, () => refuseClients);

  const bound = {
    server,
    connections,
    setTls: (next: TlsSettings) => {
      refuseClients = next.refuseClients;
      server.setSecureContext(secureContextOf(next));
    },
    dropUnauthenticated: () => {
      front?.dropPending();
      for (const socket of held) {
        const raw = rawConnectionOf(socket);
        if (raw?.authenticated) continue;
        if (raw) raw.dropped = true;
        socket.destroy();
      }
    },
    closeAfterResponses: () => {
      closeConnections();
      h2.goAway();
      // Responses already under way: Node decides the Connection field when it writes the head.
      for (const socket of connections) {
        const res = responseInFlight(socket);
        if (res && !res.headersSent) res.shouldKeepAlive = false;
      }
    },
    closeAllConnections: () => {
      server.closeAllConnections();
      h2.destroyAll();
    },
  };
  return { ...bound, ...(await bind(listen, server, acceptor)) };
}
