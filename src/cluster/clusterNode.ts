// One gateway process's session with the cluster database, kept in the background: registers and
// heartbeats, LISTENs for revocations and catches up by sequence number, and judges staleness.
// Requests never wait on it: they read the revocation feed's last status.
import pg from 'pg';
import type { RevocationFeed } from '../authz/policy/revocationFeed.ts';
import { clientOptions, shownDatabase, type ClusterSettings } from '../config/clusterSettings.ts';
import { heartbeat, leave, register, type MemberIdentity } from './membership.ts';
import { databaseVersion, schemaVersion } from './migrations.ts';
import { createRevocationMirror } from './revocationMirror.ts';
import { dropLeases, liveLeases, PUBLISHER_CHANNEL, renewLeases, sweepLapsed, type CarriedPublisher } from './publisherLeases.ts';
import { createPublisherView, type PublisherView } from './publisherView.ts';
import type { Ranking } from '../upstream/publisherQuota.ts';
import { parseRevocationNotice, REVOCATION_CHANNEL, revocationCount, revokedSince } from './sharedRevocations.ts';

/** What an operator must hear about: transitions only, never one record per retry. */
export type ClusterHealthEvent =
  | { kind: 'connected'; database: string; caughtUp: number; staleForMs?: number }
  /** The connection broke, or could not be made (reported again only when the reason changes). */
  | { kind: 'lost'; reason: string }
  | { kind: 'stale'; reason: string; whenStale: ClusterSettings['whenStale'] };

export interface ClusterObserver {
  health?(event: ClusterHealthEvent): void;
  /** Every successful exchange with the database (Unix ms). */
  heard?(atMs: number): void;
  stale?(stale: boolean): void;
  reconnect?(): void;
  revocations?(count: number): void;
  /** Remote publisher leases in this instance's view after a read. */
  remotePublishers?(count: number): void;
  /** A relay could not reach `instance` (the relay client then passes over it for a few seconds). */
  peerUnreachable?(instance: string): void;
}

/** What this instance carries, read at each heartbeat (and soon after `publishersChanged`). */
export interface CarriedSource {
  carried(): CarriedPublisher[];
  leaseSeconds: number;
  /** Called after each read of the leases with every user's publishers and services ranked (PublisherView.ranked). */
  leasesRead?(ranked: Ranking): void;
}

export interface ClusterNode {
  readonly revocations: RevocationFeed;
  /** False while the database has not been heard from for staleSeconds. */
  fresh(): boolean;
  /** Resolves once the revocations were first read, or after `timeoutMs`, whichever comes first. */
  firstSync(timeoutMs: number): Promise<boolean>;
  /** Hands every notification on `channel` to `onPayload` (LISTENed on each connection from now on). */
  listen(channel: string, onPayload: (payload: string | undefined) => void): void;
  /** NOTIFY on the current connection; dropped while there is none (what it says is sent again soon). */
  notify(channel: string, payload: string): void;
  /** Runs `body` on the current connection (after what is queued on it); refused while there is none. */
  run<T>(body: (client: pg.ClientBase) => Promise<T>): Promise<T>;
  /** The other instances' publishers, as last read (each lease judged by its own end). */
  readonly publishers: PublisherView;
  /** What this instance carries changed: write the leases soon (the request that changed it does not wait). */
  publishersChanged(): void;
  /** Leaves the membership table (best effort) and closes the session. */
  close(): Promise<void>;
}

/** Longest wait between two attempts to reach the database. */
const RECONNECT_MAX_MS = 500;

const clamp = (value: number, low: number, high: number) => Math.min(high, Math.max(low, value));

/** Stale when nothing was heard from the database for `staleMs`; fresh again at the next word from it. */
function watchFreshness(staleMs: number, on: { heard(): void; changed(stale: boolean): void }) {
  let lastHeard = performance.now();
  let staleSince: number | undefined;
  const check = setInterval(() => {
    if (staleSince !== undefined || performance.now() - lastHeard <= staleMs) return;
    staleSince = Date.now() - staleMs;
    on.changed(true);
  }, clamp(staleMs / 10, 50, 250));
  check.unref();
  return {
    heard() {
      lastHeard = performance.now();
      on.heard();
      if (staleSince === undefined) return;
      staleSince = undefined;
      on.changed(false);
    },
    /** When the database was last heard from, while stale (Unix ms); undefined while fresh. */
    staleSince: () => staleSince,
    close: () => clearInterval(check),
  };
}

/** Lapsed leases are swept this often (by every instance; a DELETE of nothing costs little). */
const SWEEP_EVERY = 20;

export function startClusterNode(settings: ClusterSettings, me: MemberIdentity, observer: ClusterObserver = {}, carrying: CarriedSource = { carried: () => [], leaseSeconds: 6 }): ClusterNode {
  const staleMs = settings.staleSeconds * 1000;
  // Several exchanges fit in one stale period, so one slow round trip does not make the instance stale;
  // and at least three renewals fit in one publisher lease, so one late heartbeat does not lapse it.
  const heartbeatMs = clamp(Math.min(staleMs / 4, (carrying.leaseSeconds * 1000) / 3), 200, 5000);
  // Silent: two heartbeats without a read. A lease renewed at every heartbeat has at least two thirds of
  // its time left when read, so a live carrier never drops out of the view between its lease end and silence.
  const view = createPublisherView(me.id, 2 * heartbeatMs);
  /** Set by a change here or a notice from another instance, while the loop is busy: its next pause is skipped. */
  let nudged = false;
  const timeoutMs = clamp(staleMs / 2, 500, 5000);
  const mirror = createRevocationMirror(settings, (count) => observer.revocations?.(count));
  let connected = false;
  let lastFailure: string | undefined;
  let closed = false;
  let wake: (() => void) | undefined;
  const synced: Array<() => void> = [];
  const channels = new Map<string, (payload: string | undefined) => void>();
  let current: pg.Client | undefined;
  const freshness = watchFreshness(staleMs, {
    heard: () => observer.heard?.(Date.now()),
    changed(stale) {
      mirror.setStale(stale);
      observer.stale?.(stale);
      if (stale) observer.health?.({ kind: 'stale', reason: `cluster database ${shownDatabase(settings)} not heard from for over ${settings.staleSeconds} s`, whenStale: settings.whenStale });
    },
  });
  const heard = freshness.heard;

  const catchUp = async (c: pg.Client): Promise<number> => mirror.caughtUp(await revokedSince(c, mirror.lastSeq));

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      if (nudged) return (nudged = false), resolve();
      const timer = setTimeout(() => ((wake = undefined), resolve()), ms);
      wake = () => (clearTimeout(timer), (wake = undefined), (nudged = false), resolve());
    });
  const nudge = () => ((nudged = true), wake?.());

  let rounds = 0;
  /** Writes what this instance carries (renewing every lease) and reads everyone's back into the view. */
  const exchangeLeases = async (c: pg.Client): Promise<void> => {
    await renewLeases(c, me.id, carrying.carried(), carrying.leaseSeconds);
    if (++rounds % SWEEP_EVERY === 0) await sweepLapsed(c);
    view.replace(await liveLeases(c));
    observer.remotePublishers?.(view.size());
    carrying.leasesRead?.(view.ranked());
  };

  /** One connection's life: set up, then heartbeat until it breaks or the node closes. */
  const session = async (): Promise<void> => {
    const c = new pg.Client(clientOptions(settings, timeoutMs));
    let broken: Error | undefined;
    // A connection that dies between exchanges is noticed here (and wakes the heartbeat at once).
    const breakOff = (error: Error) => ((broken ??= error), wake?.());
    c.on('error', breakOff);
    c.on('end', () => breakOff(new Error('connection closed by the server')));
    c.on('notification', (message) => {
      heard();
      // Another instance's publishers changed: read the leases now rather than at the next heartbeat.
      if (message.channel === PUBLISHER_CHANNEL) return void (message.payload !== me.id && nudge());
      if (message.channel !== REVOCATION_CHANNEL) return channels.get(message.channel)?.(message.payload);
      const notice = parseRevocationNotice(message.payload);
      // The fast path: the id is refused from now on; lastSeq moves only with catch-up reads, which see every row in order.
      if (notice) mirror.noticed(notice);
    });
    try {
      await c.connect();
      const version = await databaseVersion(c);
      if (version !== schemaVersion) throw new Error(`the cluster database's schema is version ${version}, this gatehouse needs ${schemaVersion}: run gatehouse cluster migrate`);
      await register(c, me, settings.staleSeconds);
      // LISTEN before catching up: what commits in between arrives both ways, and ids are a set.
      await c.query(`LISTEN ${REVOCATION_CHANNEL}`);
      await c.query(`LISTEN ${PUBLISHER_CHANNEL}`);
      for (const channel of channels.keys()) await c.query(`LISTEN ${channel}`);
      const wasStaleSince = freshness.staleSince();
      const caughtUp = await catchUp(c);
      await exchangeLeases(c);
      heard();
      connected = true;
      current = c;
      lastFailure = undefined;
      for (const resolve of synced.splice(0)) resolve();
      observer.health?.({ kind: 'connected', database: shownDatabase(settings), caughtUp, ...(wasStaleSince !== undefined && { staleForMs: Date.now() - wasStaleSince }) });
      while (!closed) {
        await pause(heartbeatMs);
        if (broken) throw broken;
        if (closed) break;
        await catchUp(c);
        // A row committed out of sequence order (written around `token revoke`, by hand) is missed by
        // "seq > last": the count tells, and then everything is read again (ids are a set).
        if ((await revocationCount(c)) > mirror.size) mirror.caughtUp(await revokedSince(c, 0));
        await heartbeat(c, me, mirror.lastSeq);
        await exchangeLeases(c);
        heard();
      }
    } finally {
      if (current === c) current = undefined;
      if (closed) await dropLeases(c, me.id).then(() => leave(c, me)).catch(() => undefined);
      // A hung server never answers the goodbye: do not let it hold the reconnect loop (the socket goes when the server does).
      await Promise.race([c.end().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())]);
    }
  };

  const run = async () => {
    let backoffMs = 100;
    while (!closed) {
      try {
        await session();
      } catch (error) {
        if (closed) break;
        const reason = error instanceof Error ? error.message || error.constructor.name : String(error);
        if (connected || reason !== lastFailure) observer.health?.({ kind: 'lost', reason });
        connected = false;
        lastFailure = reason;
        observer.reconnect?.();
        await pause(backoffMs);
        // Back off to at most half a second (a refused connect costs little): it bounds the time to recover after an outage.
        backoffMs = Math.min(RECONNECT_MAX_MS, backoffMs * 2);
        continue;
      }
      backoffMs = 100;
    }
  };
  const running = run();

  return {
    revocations: mirror.feed,
    publishers: view,
    publishersChanged: nudge,
    fresh: () => mirror.loaded && freshness.staleSince() === undefined,
    firstSync: (ms) =>
      mirror.loaded
        ? Promise.resolve(true)
        : new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), ms);
            synced.push(() => (clearTimeout(timer), resolve(true)));
          }),
    listen(channel, onPayload) {
      channels.set(channel, onPayload);
      void current?.query(`LISTEN ${channel}`).catch(() => undefined);
    },
    notify(channel, payload) {
      void current?.query('SELECT pg_notify($1, $2)', [channel, payload]).catch(() => undefined);
    },
    run(body) {
      return current === undefined ? Promise.reject(new Error('not connected to the cluster database')) : body(current);
    },
    async close() {
      closed = true;
      freshness.close();
      wake?.();
      await running;
    },
  };
}
