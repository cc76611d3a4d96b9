// What the gateway knows about one client connection: its id, verified identity and address.
// Set once after the TLS handshake; every request and tunnel on the connection reads it.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { PeerIdentity } from '../tls/peerIdentity.ts';

export interface ConnectionContext {
  id: string;
  identity: PeerIdentity;
  /** `ip:port`, or `unix` when the listener is a UNIX socket (then sourceIp is empty). */
  source: string;
  sourceIp: string;
  openedAt: number;
  requests: number;
  /** Requests being handled right now (pipelining can make it more than one). */
  inFlight: number;
  /** The HTTP parser's error code, once the client sent something malformed (the connection then closes). */
  parseError?: string;
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

export function sourceOf(socket: Socket): { source: string; sourceIp: string } {
  const ip = socket.remoteAddress;
  if (!ip) return { source: 'unix', sourceIp: '' };
  const bare = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  return { source: bare.includes(':') ? `[${bare}]:${socket.remotePort}` : `${bare}:${socket.remotePort}`, sourceIp: bare };
}
