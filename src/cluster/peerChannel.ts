// The peer channel's listening end: mTLS HTTP/2 on cluster.peerListen, open only to certificates of the
// site CA with the instance role; each stream it takes goes through the relay way in (exchange/enter.ts).
import { randomBytes } from 'node:crypto';
import { createSecureServer, type Http2SecureServer, type Http2Session, type Http2Stream, type ServerHttp2Session } from 'node:http2';
import { DEFAULT_MAX_STREAM_WINDOW } from '../config/publishWindowBounds.ts';
import { PUBLISH_SESSION_SETTINGS, sizeWindowsToPath } from '../upstream/publishWindows.ts';
import type { TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient } from '../audit/auditRecord.ts';
import type { ConnectionContext } from '../exchange/connection.ts';
import { enter } from '../exchange/enter.ts';
import type { RelayWayIn } from '../forward/relayWayIn.ts';
import { peerIdentity } from '../tls/peerIdentity.ts';
import type { CertificateRef } from '../tls/clientCrl.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import { tlsRejectReason } from '../listener/tlsListener.ts';
import { instanceOf } from '../upstream/relayWire.ts';

/** The instance's own certificate and the site CA, as both ends of the peer channel present and check them. */
export interface PeerTls {
  cert: string;
  key: string;
  ca: string;
}

/** The client CRL as the user listener has it now (tls.crl): the peer port applies it to instance certificates too. */
export interface PeerCrl {
  /** PEM of each list, as Node's `crl` option takes it; absent without tls.crl. */
  crl?: string[];
  /** Set while the CRL cannot be used: every peer is refused (fail closed, as on the user listener). */
  refuseClients?: string;
  /** The list's check of a certificate, to end the sessions of peers it now revokes. */
  isRevoked?: (certificate: CertificateRef) => boolean;
}

/** How many relayed streams one entry instance may have open here at once (each is a request or a tunnel). */
const MAX_RELAYED_STREAMS = 65_536;

const streamsOpen = new WeakMap<Http2Session, number>();

/** Counts `stream` open on `session` until it closes (either end of the peer channel). */
export function countStream(session: Http2Session, stream: Http2Stream): void {
  streamsOpen.set(session, streamsOn(session) + 1);
  stream.once('close', () => streamsOpen.set(session, streamsOn(session) - 1));
}

/** Streams open on a peer channel session now, for its window sizing (the budget is shared among them). */
export function streamsOn(session: Http2Session): number {
  return streamsOpen.get(session) ?? 0;
}

/** A peer that sends nothing for this long (not even a PING answer) is dropped. */
const PEER_IDLE_MS = 60_000;

export interface PeerListener {
  readonly address: string;
  /** A new CRL (or none, or unusable): applies to the next handshake; sessions of instances it revokes end now. */
  setCrl(crl: PeerCrl): void;
  close(): Promise<void>;
}

function hostPort(address: string): { host: string; port: number } {
  const cut = address.lastIndexOf(':');
  return { host: address.slice(0, cut).replace(/^\[|\]$/g, ''), port: Number(address.slice(cut + 1)) };
}

/** The context of one peer session: the entry instance's certificate, where it connected from. */
function peerContext(socket: TLSSocket, identity: ConnectionContext['identity']): ConnectionContext {
  const sourceIp = socket.remoteAddress ?? '';
  return { id: `peer-${randomBytes(6).toString('hex')}`, identity, source: `${sourceIp}:${socket.remotePort ?? 0}`, sourceIp, openedAt: performance.now(), requests: 0, inFlight: new Set() };
}

const NO_INSTANCE_ROLE = 'peer channel: the certificate has no instance role (URI gatehouse-instance:<name>)';

/** Refused handshakes on the peer port, recorded as on the user listener (within the refusal budgets). */
function recordPeerRejects(server: Http2SecureServer, refusals: Pick<RefusalRecords, 'write'>): void {
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    const sourceIp = socket.remoteAddress ?? '';
    const { kind, reason } = tlsRejectReason(err, socket);
    refusals.write({ event: 'tls.reject', source: `${sourceIp}:${socket.remotePort ?? 0}`, decision: 'deny', reason: `peer channel: ${reason}` }, { source: sourceIp, kind });
  });
}

export async function listenForPeers(address: string, tls: PeerTls, relay: RelayWayIn, audit: Pick<AuditLog, 'write'>, refusals: Pick<RefusalRecords, 'write'>, crl: PeerCrl = {}): Promise<PeerListener> {
  const sessions = new Set<ServerHttp2Session>();
  let current = crl;
  const context = () => ({ cert: tls.cert, key: tls.key, ca: tls.ca, ...(current.crl && { crl: current.crl }) });
  const server: Http2SecureServer = createSecureServer({ ...context(), requestCert: true, rejectUnauthorized: true, allowHTTP1: false, minVersion: 'TLSv1.3', settings: { ...PUBLISH_SESSION_SETTINGS, maxConcurrentStreams: MAX_RELAYED_STREAMS } });
  server.setTimeout(PEER_IDLE_MS);
  server.on('session', (session) => {
    session.on('error', () => undefined);
    const socket = session.socket as TLSSocket;
    const identity = peerIdentity(socket);
    const instance = identity && instanceOf(identity);
    // Signed by the site CA but not an instance's (a user's certificate): it must never carry a relay.
    // And while the CRL cannot be used, no certificate is known not to be revoked.
    const refused = !identity || !instance ? NO_INSTANCE_ROLE : current.refuseClients === undefined ? undefined : `peer channel: ${current.refuseClients}`;
    if (!identity || !instance || refused !== undefined) {
      audit.write({ event: 'tls.reject', source: `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`, client: auditClient(identity), decision: 'deny', reason: refused ?? NO_INSTANCE_ROLE });
      // The session's socket is a guarded proxy: destroying the session closes it (Node 20 throws, ending the
      // process, on socket.destroy() there).
      session.destroy();
      return;
    }
    sessions.add(session);
    // Uploads (entry instance to here) get windows that grow with the path, as towards a publisher.
    sizeWindowsToPath(session, { maxStreamWindow: DEFAULT_MAX_STREAM_WINDOW, streamsOpen: () => streamsOn(session) }, 'localSettings');
    session.once('close', () => sessions.delete(session));
    const conn = peerContext(socket, identity);
    session.on('stream', (stream, headers) => {
      stream.on('error', () => undefined);
      countStream(session, stream);
      if (headers[':method'] !== 'CONNECT') {
        stream.respond({ ':status': 405 }, { endStream: true });
        return;
      }
      void enter(relay.wayIn, conn, relay.wayIn.arrive(stream, headers, instance));
    });
  });
  // A handshake a peer botches (wrong CA, no certificate, revoked) is its own fault; never the process's end.
  recordPeerRejects(server, refusals);
  server.on('sessionError', () => undefined);
  const { host, port } = hostPort(address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => (server.off('error', reject), resolve()));
  });
  server.on('error', () => undefined);
  const bound = server.address();
  return {
    address: bound && typeof bound === 'object' ? `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}` : address,
    setCrl(next) {
      current = next;
      server.setSecureContext(context());
      const revoked = next.isRevoked;
      if (!revoked) return;
      for (const session of sessions) {
        const cert = (session.socket as TLSSocket).getPeerX509Certificate();
        if (!cert || !revoked(cert)) continue;
        audit.write({ event: 'tls.reject', source: `${session.socket.remoteAddress ?? ''}:${session.socket.remotePort ?? 0}`, client: auditClient(peerIdentity(session.socket as TLSSocket)), decision: 'deny', reason: 'peer channel: instance certificate revoked (tls.crl): session ended' });
        session.destroy();
      }
    },
    async close() {
      relay.close('gateway shutting down');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      const timer = setTimeout(() => sessions.forEach((s) => s.destroy()), 2000);
      await closed;
      clearTimeout(timer);
    },
  };
}
