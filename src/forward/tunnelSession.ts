// What every tunnel (CONNECT, WebSocket tunnel, proxied WebSocket) shares once admitted: one tunnel.open
// and one tunnel.close record, the upstream opened on a live replica, the splice, and shutdown.
import { relayRecord } from '../upstream/relayedUpstreams.ts';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AuditLog } from '../audit/auditLog.ts';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { AuditRecord, AuditToken } from '../audit/auditRecord.ts';
import type { Admission, AdmissionContext } from '../admission/admitRequest.ts';
import type { IdentityLimits } from '../admission/identityLimits.ts';
import type { GatewayLimits } from '../config/schema.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { RouteAdmission } from '../exchange/admit.ts';
import type { Refusal } from '../errors/refusal.ts';
import type { StreamOptions, UpstreamConnection, UpstreamOpener } from '../upstream/openUpstream.ts';
import { splice, type SpliceEnds } from './byteSplice.ts';
import { sendRefusalOnSocket } from './refusals.ts';
import { openOnLiveReplica } from './replicaRetry.ts';

/** Route defaults for `idleTimeoutSeconds` and `connectTimeoutSeconds` (see the route schema). */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 3600;
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 10;

export interface TunnelDeps {
  /** Read per connection, so a config reload takes effect for the next tunnel. */
  admission: () => AdmissionContext;
  audit: AuditLog;
  /** Deny records go through their budgets here. */
  refusals: RefusalRecords;
  tunnels: TunnelRegistry;
  identityLimits: IdentityLimits;
  /** The current config's limits. */
  limits: () => GatewayLimits;
  /** Opens a stream to any kind of upstream (socket, address, published service). */
  upstreams: UpstreamOpener;
}

/** The tunnels that are carrying bytes right now, so shutdown can end them with a close record. */
export interface TunnelRegistry {
  readonly accepting: boolean;
  readonly size: number;
  /**
   * `revocationIds`: the ids of the token that opened the tunnel, so a revocation can end it; `conn`: the
   * id of the client connection it came on, so a revoked client certificate can end it. `drainMs` (shutdown
   * only) is how long what it carries may still take to finish: a tunnel is ended at once, a publisher drains.
   */
  add(stop: (reason: string, drainMs?: number) => Promise<void>, revocationIds?: readonly string[], conn?: string): () => void;
  /** Stops accepting and ends every open tunnel (publishers drain for up to `drainMs`); resolves when their close records are written. */
  closeAll(reason: string, drainMs?: number): Promise<void>;
  /** Ends the open tunnels whose token has a revoked id (a tunnel is decided once, at its start). */
  endRevoked(isRevoked: (ids: readonly string[]) => boolean): Promise<number>;
  /** Ends the open tunnels that came on these client connections, with `reason`; resolves when their close records are written. */
  endConnections(conns: ReadonlySet<string>, reason: string): Promise<number>;
}

export function createTunnelRegistry(): TunnelRegistry {
  const open = new Map<(reason: string, drainMs?: number) => Promise<void>, { revocationIds: readonly string[]; conn?: string }>();
  let accepting = true;
  return {
    get accepting() {
      return accepting;
    },
    get size() {
      return open.size;
    },
    add(stop, revocationIds = [], conn) {
      open.set(stop, { revocationIds, ...(conn !== undefined && { conn }) });
      return () => open.delete(stop);
    },
    async closeAll(reason, drainMs) {
      accepting = false;
      await Promise.all([...open.keys()].map((stop) => stop(reason, drainMs)));
    },
    async endRevoked(isRevoked) {
      const ended = [...open].filter(([, { revocationIds: ids }]) => ids.length > 0 && isRevoked(ids)).map(([stop]) => stop('token revoked'));
      await Promise.all(ended);
      return ended.length;
    },
    async endConnections(conns, reason) {
      const ended = [...open].filter(([, { conn }]) => conn !== undefined && conns.has(conn)).map(([stop]) => stop(reason));
      await Promise.all(ended);
      return ended.length;
    },
  };
}

/** The audit fields that describe what the client asked for. */
export interface TunnelRequestFields {
  protocol: 'http' | 'websocket' | 'tcp' | 'udp';
  method: string;
  path?: string;
  target?: string;
  /** 'connect', 'websocket-tunnel' or 'websocket': how the bytes travel. */
  transport: string;
}

export interface AdmittedTunnel {
  /** The tunnel's exchange (its connection, its records). */
  exchange: Exchange;
  admission: Extract<Admission, { allow: true }>;
  connectTimeoutMs: number;
  /** Opens the upstream within `connectTimeoutMs`: a published replica lost before it answered is replaced by another (replicaRetry.ts). */
  openUpstream(options?: StreamOptions): Promise<UpstreamConnection>;
  /**
   * No bytes will flow (upstream unreachable or refusing, client gone): writes the close record.
   * With a refusal, answers the client with it; with a status alone the caller has answered;
   * with neither, the client socket is dropped.
   */
  fail(reason: string, answer?: number | Refusal): void;
  /** Carries bytes until both sides are done; writes the close record with the counts. */
  run(ends: Omit<SpliceEnds, 'idleTimeoutMs'>, status: number): void;
}

/** An admitted tunnel and what its records need. */
export interface TunnelOpening {
  exchange: Exchange;
  socket: Duplex;
  admission: RouteAdmission;
  /** Gives back the identity's tunnel slot. */
  release(): void;
  transport: string;
  token: AuditToken | undefined;
}

/** Writes `tunnel.open` and hands back what the forwarder needs; the exchange's close record is `tunnel.close`. */
export function openTunnel(deps: TunnelDeps, t: TunnelOpening): AdmittedTunnel {
  const { exchange, socket, admission, transport, token } = t;
  const { route, upstream } = admission;
  const tunnel: Partial<AuditRecord> = { route: route.config.name, upstream: upstream.label, ...(upstream.via !== undefined && { publisher: upstream.via }), ...relayRecord(upstream), token, ...(admission.path !== undefined && { path: admission.path }) };
  exchange.write({ ...tunnel, event: 'tunnel.open', decision: 'allow', reason: admission.decision.matched, durationMs: exchange.elapsedMs(), detail: { transport } });
  const opened = performance.now();
  const connectTimeoutMs = Math.round((route.config.connectTimeoutSeconds ?? DEFAULT_CONNECT_TIMEOUT_SECONDS) * 1000);
  /** The publisher that took the tunnel, and those lost under its opening (set once it is opened). */
  let served: { via: string | undefined; lost: readonly string[] } | undefined;
  const close = (extra: Partial<AuditRecord>) => {
    t.release();
    // The publisher as opened: a replica may have taken the place of the one chosen at admission.
    const via = served?.via ?? upstream.via;
    const retried = served && served.lost.length > 0 ? { retried: served.lost.length, retriedFrom: served.lost } : {};
    exchange.close({ ...tunnel, ...(via !== undefined && { publisher: via }), event: 'tunnel.close', durationMs: Math.round(performance.now() - opened), detail: { transport, ...retried }, ...extra });
  };

  return {
    exchange,
    admission,
    connectTimeoutMs,
    async openUpstream(options) {
      const { opened: connection, retry } = await openOnLiveReplica(deps.upstreams, upstream, connectTimeoutMs, options);
      served = { via: retry.target.via, lost: retry.lost };
      return connection;
    },
    fail(reason, answer) {
      const status = typeof answer === 'object' ? answer.status : answer;
      if (typeof answer === 'object') sendRefusalOnSocket(socket, answer);
      else if (status === undefined) socket.destroy();
      close({ ...(status !== undefined && { status }), reason, bytesIn: 0, bytesOut: 0 });
    },
    run(ends, status) {
      const live = splice({ ...ends, idleTimeoutMs: Math.round((route.config.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS) * 1000) });
      let recorded!: () => void;
      const written = new Promise<void>((resolve) => (recorded = resolve));
      const forget = deps.tunnels.add((reason) => {
        live.stop(reason, reason === 'gateway shutting down' ? 1001 : 1008);
        return written;
      }, admission.decision.revocationIds, exchange.conn.id);
      // Shutdown began while this one was still reaching its upstream.
      if (!deps.tunnels.accepting) live.stop('gateway shutting down', 1001);
      void live.done.then((result) => {
        forget();
        close({ status, ...result });
        recorded();
      });
    },
  };
}

/** Lets both directions of a client socket finish independently (Node's https server turns that off). */
export function allowHalfOpen(socket: Duplex): void {
  (socket as Socket).allowHalfOpen = true;
}
