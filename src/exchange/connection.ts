// What a client connection is to the stages below the listener: its id, verified identity, address and counts.
// The listener makes one per authenticated connection and hands it down with each request; no stage looks it up.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
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

/** What takes a request, an upgrade or a CONNECT, with the context of the connection it came on (undefined: not authenticated). */
export interface ListenerHandlers {
  request(req: IncomingMessage, res: ServerResponse, conn: ConnectionContext | undefined): void | Promise<void>;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, conn: ConnectionContext | undefined): void | Promise<void>;
  connect(req: IncomingMessage, socket: Duplex, head: Buffer, conn: ConnectionContext | undefined): void | Promise<void>;
  /** A stream of an HTTP/2 connection (which serves RFC 9298 extended CONNECT alone; undefined: no certificate). */
  stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, conn: ConnectionContext | undefined, session: ServerHttp2Session): void | Promise<void>;
  /**
   * What takes the requests of a connection that presented no client certificate (issuer.certificates):
   * its context is never handed to the handlers above, so nothing reaches a route, tunnel or page by mistake.
   */
  certificateless?: CertificatelessHandlers;
}

/** The handlers of a certificate-less connection: its context's identity stands for no certificate (tls/peerIdentity). */
export interface CertificatelessHandlers {
  request(req: IncomingMessage, res: ServerResponse, conn: ConnectionContext): void | Promise<void>;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, conn: ConnectionContext): void | Promise<void>;
  connect(req: IncomingMessage, socket: Duplex, head: Buffer, conn: ConnectionContext): void | Promise<void>;
}
