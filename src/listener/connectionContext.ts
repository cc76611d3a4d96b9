// Where the listener keeps what it knows of each socket: the connection context it made after the TLS
// handshake (handed down with every request), and the source address, PROXY header and raw-socket state.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { ConnectionContext } from '../exchange/connection.ts';

const contexts = new WeakMap<Socket, ConnectionContext>();

export function newConnectionId(): string {
  return randomBytes(6).toString('hex');
}

export function attachContext(socket: Socket, context: ConnectionContext): void {
  contexts.set(socket, context);
}

export function contextOf(socket: Socket): ConnectionContext | undefined {
  return contexts.get(socket);
}

/** Contexts of connections without a client certificate, apart: contextOf never finds them. */
const certificateless = new WeakMap<Socket, ConnectionContext>();

export function attachCertificateless(socket: Socket, context: ConnectionContext): void {
  certificateless.set(socket, context);
}

export function certificatelessOf(socket: Socket): ConnectionContext | undefined {
  return certificateless.get(socket);
}

export interface ConnectionSource {
  source: string;
  sourceIp: string;
  /** The trusted balancer that relayed the connection with a PROXY header (its own `ip:port`). */
  via?: string;
}

export function formatSource(ip: string, port: number | undefined): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Sources named by a PROXY header, keyed by the accepted socket: they replace the socket's own peer. */
const proxiedSources = new WeakMap<Socket, ConnectionSource>();

export function setProxiedSource(raw: Socket, source: ConnectionSource): void {
  proxiedSources.set(raw, source);
}

export function sourceOf(socket: Socket): ConnectionSource {
  const parent = (socket as Socket & { _parent?: Socket })._parent;
  const proxied = proxiedSources.get(socket) ?? (parent ? proxiedSources.get(parent) : undefined);
  if (proxied) return proxied;
  const ip = socket.remoteAddress;
  if (!ip) return { source: 'unix', sourceIp: '' };
  const bare = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  return { source: formatSource(bare, socket.remotePort), sourceIp: bare };
}

/** What the listener knows about one accepted TCP or UNIX socket, before and after TLS. */
export interface RawConnection extends ConnectionSource {
  /** Destroyed by the gateway itself (a connection limit, shutdown): the reset that follows is not the client's doing. */
  dropped: boolean;
  /** Completed TLS with a verified client certificate. */
  authenticated: boolean;
}

const rawConnections = new WeakMap<Socket, RawConnection>();

/** Notes where a just-accepted socket comes from: once destroyed, a socket forgets its peer. */
export function recordRawConnection(raw: Socket): RawConnection {
  const record = { ...sourceOf(raw), dropped: false, authenticated: false };
  rawConnections.set(raw, record);
  return record;
}

/** The record of `socket`, a raw socket or the TLS socket wrapping one. */
export function rawConnectionOf(socket: Socket): RawConnection | undefined {
  // Node keeps the accepted socket under the TLS socket it wraps it in as `_parent`.
  const parent = (socket as Socket & { _parent?: Socket })._parent;
  return rawConnections.get(socket) ?? (parent ? rawConnections.get(parent) : undefined);
}
