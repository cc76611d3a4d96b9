// The front door: HTTPS servers on TCP addresses and UNIX sockets that demand a client certificate
// from the site CA, record who connected, and hand requests, upgrades and CONNECTs to the forwarders.
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient } from '../audit/auditRecord.ts';
import type { ListenAddress } from '../config/schema.ts';
import { peerIdentity } from '../tls/peerIdentity.ts';
import { attachContext, contextOf, newConnectionId, sourceOf } from './connectionContext.ts';
import { createRejectLimiter } from './rejectLimiter.ts';

export interface TlsSettings extends SecureContextOptions {
  minVersion: 'TLSv1.2' | 'TLSv1.3';
}

export interface ListenerHandlers {
  request(req: IncomingMessage, res: ServerResponse): void | Promise<void>;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void | Promise<void>;
  connect(req: IncomingMessage, socket: Duplex, head: Buffer): void | Promise<void>;
}

export interface BoundListener {
  server: Server;
  /** Authenticated connections still open: shutdown waits for their close records. */
  connections: Set<TLSSocket>;
  /** `127.0.0.1:8443` or the UNIX socket path. */
  address: string;
  port?: number;
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export async function openListener(listen: ListenAddress, tls: TlsSettings, handlers: ListenerHandlers, audit: AuditLog): Promise<BoundListener> {
  const server = createServer({
    ...tls,
    requestCert: true,
    rejectUnauthorized: true,
    // Slow or silent clients must not hold sockets forever.
    handshakeTimeout: 10_000,
    headersTimeout: 20_000,
    requestTimeout: 0,
    keepAliveTimeout: 30_000,
  });

  const rejects = createRejectLimiter();
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    // By now the TLS socket may be destroyed and have forgotten its peer; the TCP socket under it has not.
    const parent = (socket as TLSSocket & { _parent?: Socket })._parent;
    const { source, sourceIp } = sourceOf(socket.remoteAddress ? socket : parent ?? socket);
    const limit = rejects.admit(sourceIp || source);
    if (!limit.write) return;
    // A certificate from another CA passes the handshake itself; Node then checks the chain, notes
    // why it failed in authorizationError and drops the socket, so that is the reason worth recording.
    const reason = socket.authorizationError
      ? `client certificate rejected: ${String(socket.authorizationError)}`
      : `${err.code ?? 'TLS_ERROR'}: ${err.message.trim()}`;
    audit.write({ event: 'tls.reject', source, decision: 'deny', reason, ...(limit.suppressed > 0 && { detail: { suppressedBefore: limit.suppressed } }) });
  });

  const connections = new Set<TLSSocket>();
  server.on('secureConnection', (socket: TLSSocket) => {
    const identity = peerIdentity(socket);
    const { source, sourceIp } = sourceOf(socket);
    if (!identity) {
      audit.write({ event: 'tls.reject', source, decision: 'deny', reason: `client certificate not verified: ${String(socket.authorizationError ?? 'none presented')}` });
      socket.destroy();
      return;
    }
    const context = { id: newConnectionId(), identity, source, sourceIp, openedAt: performance.now(), requests: 0, inFlight: 0 };
    attachContext(socket, context);
    connections.add(socket);
    audit.write({ event: 'connection.open', conn: context.id, source, client: auditClient(identity), reason: `${socket.getProtocol() ?? 'TLS'} ${socket.getCipher()?.name ?? ''}`.trim() });
    socket.once('close', () => {
      connections.delete(socket);
      audit.write({
        event: 'connection.close',
        conn: context.id,
        source,
        client: auditClient(identity),
        bytesIn: socket.bytesRead,
        bytesOut: socket.bytesWritten,
        durationMs: Math.round(performance.now() - context.openedAt),
        detail: { requests: context.requests },
      });
    });
  });

  // A handler that throws must never take the gateway down or touch other connections.
  const guard = <A extends unknown[]>(fn: (...args: A) => void | Promise<void>, onFail: (...args: A) => void) =>
    (...args: A) => {
      Promise.resolve()
        .then(() => fn(...args))
        .catch((err: unknown) => {
          audit.write({ event: 'request', reason: `internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`, status: 500 });
          onFail(...args);
        });
    };
  server.on('request', guard(handlers.request, (_req, res) => {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"internal error"}\n');
    else res.destroy();
  }));
  server.on('upgrade', guard(handlers.upgrade, (_req, socket) => socket.destroy()));
  server.on('connect', guard(handlers.connect, (_req, socket) => socket.destroy()));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const ctx = contextOf(socket as TLSSocket);
    // Errors on sockets that never authenticated are TLS failures, already recorded as tls.reject.
    // A request in flight (a bad chunk after admission) is recorded by its forwarder, which reads this code.
    if (ctx) ctx.parseError = err.code ?? err.message;
    if (ctx && ctx.inFlight === 0) audit.write({ event: 'request', conn: ctx.id, source: ctx.source, client: auditClient(ctx.identity), status: 400, decision: 'deny', reason: `malformed HTTP: ${err.code ?? err.message}` });
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  if (listen.unix) {
    await mkdir(dirname(listen.unix), { recursive: true, mode: 0o755 });
    await removeStaleSocket(listen.unix);
    const mode = parseInt(listen.mode ?? '0660', 8);
    // Create the socket file with its final mode (no window where it is wider), then chmod to be sure.
    const umask = process.umask(0o777 & ~mode);
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(listen.unix, () => resolve()));
    } finally {
      process.umask(umask);
    }
    await chmod(listen.unix, mode);
    return { server, connections, address: listen.unix };
  }
  const [, host, port] = /^\[?(.*?)\]?:(\d+)$/.exec(listen.tcp ?? '') ?? [];
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(Number(port), host, () => resolve()));
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound ? bound.port : Number(port);
  return { server, connections, address: `${host?.includes(':') ? `[${host}]` : host}:${boundPort}`, port: boundPort };
}
