// What the gateway knows about one client connection: its id, verified identity and address.
// Set once after the TLS handshake; every request and tunnel on the connection reads it.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { PeerIdentity } from '../tls/peerIdentity.ts';

/** Why a connection broke mid-request, as the listener tells the requests in flight on it. */
export type BreakListener = (broken: { status: number; reason: string }) => void;

export interface ConnectionContext {
  id: string;
  identity: PeerIdentity;
  /** `ip:port`, or `unix` when the listener is a UNIX socket (then sourceIp is empty). */
  source: string;
  sourceIp: string;
  openedAt: number;
  requests: number;
  /**
   * The requests being handled right now (pipelining can make it more than one), each as how it is told
   * that the connection broke under it (malformed body, body timeout): its own record says so.
   */
  inFlight: Set<BreakListener>;
  /** Why the gateway ended the connection on its own (its certificate was revoked): the connection.close record says so. */
  endedBy?: string;
}

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
