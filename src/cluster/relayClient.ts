// The peer channel's dialling end: one mTLS HTTP/2 session per carrying instance (its certificate must name
// that instance), kept alive by PINGs, and one CONNECT stream per relayed request or tunnel.
import { connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { X509Certificate } from 'node:crypto';
import { refuse } from '../errors/refusal.ts';
import { identityFromCertificate } from '../tls/peerIdentity.ts';
import { upstreamRefusal, type UpstreamConnection } from '../upstream/openUpstream.ts';
import { connectAnswer } from '../upstream/connectAnswer.ts';
import type { RemoteCarrier, RemoteCarriers } from '../upstream/relayedUpstreams.ts';
import { encodeRelay, instanceOf, RELAY_AUTHORITY, RELAY_ERROR_HEADER, RELAY_HEADER } from '../upstream/relayWire.ts';
import { DEFAULT_MAX_STREAM_WINDOW } from '../config/publishWindowBounds.ts';
import { PUBLISH_SESSION_SETTINGS, sizeWindowsToPath } from '../upstream/publishWindows.ts';
import { countStream, streamsOn, type PeerTls } from './peerChannel.ts';
import type { PublisherView, RemotePublisher } from './publisherView.ts';

/** An instance that could not be reached is passed over this long (its leases lapse meanwhile if it is dead). */
const UNREACHABLE_MS = 5_000;
/** A PING every so often while a session is open; no answer within the timeout ends it (a frozen peer). */
const PING_EVERY_MS = 2_000;
const PING_TIMEOUT_MS = 5_000;

/** Ends a session with `why` when its peer stops answering PINGs: every stream on it ends as an error. */
function watchPeer(session: ClientHttp2Session): void {
  let waiting: NodeJS.Timeout | undefined;
  const timer = setInterval(() => {
    if (waiting || session.destroyed) return;
    waiting = setTimeout(() => session.destroy(new Error(`peer instance did not answer a PING within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
    waiting.unref();
    const sent = session.ping((err) => {
      clearTimeout(waiting);
      waiting = undefined;
      if (err) session.destroy(err);
    });
    if (!sent) (clearTimeout(waiting), (waiting = undefined));
  }, PING_EVERY_MS);
  timer.unref();
  session.once('close', () => (clearInterval(timer), clearTimeout(waiting)));
}

export interface RelayClient extends RemoteCarriers {
  close(): void;
}

export function createRelayClient(me: string, tls: PeerTls, view: PublisherView, onUnreachable: (instance: string) => void = () => {}): RelayClient {
  const sessions = new Map<string, ClientHttp2Session>();
  let turn = 0;

  /** The session to `carrier`'s instance, opened if there is none usable; its certificate must name that instance. */
  function sessionTo(carrier: RemotePublisher): ClientHttp2Session {
    const known = sessions.get(carrier.instanceId);
    if (known && !known.closed && !known.destroyed) return known;
    const session = connect(`https://${carrier.peerAddress}`, {
      cert: tls.cert,
      key: tls.key,
      ca: tls.ca,
      minVersion: 'TLSv1.3',
      // Downloads (carrier to here) get windows that grow with the path between the instances, as a publisher's do.
      settings: PUBLISH_SESSION_SETTINGS,
      // Not a host name check: the peer is whichever instance the database says carries the publisher, and
      // only a certificate of the site CA naming exactly that instance may take what this one relays.
      checkServerIdentity: (_host, cert) => {
        const named = instanceOf(identityFromCertificate(new X509Certificate(cert.raw)));
        return named === carrier.instance ? undefined : new Error(`peer at ${carrier.peerAddress} is not instance ${carrier.instance} (its certificate names ${named ?? 'no instance'})`);
      },
    });
    session.on('error', () => undefined);
    session.once('close', () => sessions.get(carrier.instanceId) === session && sessions.delete(carrier.instanceId));
    watchPeer(session);
    sizeWindowsToPath(session, { maxStreamWindow: DEFAULT_MAX_STREAM_WINDOW, streamsOpen: () => streamsOn(session) }, 'connect');
    sessions.set(carrier.instanceId, session);
    return session;
  }

  /** Instances this one could not reach lately (until when, performance.now()): not chosen while others carry. */
  const unreachable = new Map<string, number>();
  const passOver = (c: RemotePublisher) => {
    unreachable.set(c.instanceId, performance.now() + UNREACHABLE_MS);
    onUnreachable(c.instance);
  };
  const reachable = (c: RemotePublisher, now: number) => (unreachable.get(c.instanceId) ?? 0) <= now;

  /** A carrier of `user`'s `service` (of one certificate if given), turning among those reachable; else any. */
  function choose(user: string, service: string, fingerprint?: string, besides?: string): RemotePublisher | undefined {
    const now = performance.now();
    const all = view.carriers(user, service, fingerprint).filter((c) => c.instanceId !== besides);
    const live = all.filter((c) => reachable(c, now));
    const pool = live.length > 0 ? live : all;
    if (pool.length === 0) return undefined;
    turn = (turn + 1) % 1_000_000;
    return pool[turn % pool.length];
  }

  function find(target: { user: string; service: string }): RemoteCarrier | undefined {
    const chosen = choose(target.user, target.service);
    return chosen && { instance: chosen.instance, publisher: chosen.publisher, fingerprint: chosen.fingerprint };
  }

  const refused = (why: string) => upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', why));

  /** One CONNECT to `carrier`; `retry` when its instance could not be reached (nothing was sent then: safe to go elsewhere). */
  async function attempt(target: Parameters<RemoteCarriers['open']>[0], carrier: RemotePublisher, timeoutMs: number): Promise<UpstreamConnection | 'retry'> {
    const ticket = target.relay;
    if (!ticket.decided) return refused(`relay ${ticket.id}: not decided`);
    let stream: ClientHttp2Stream;
    try {
      const session = sessionTo(carrier);
      stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'CONNECT', [h2.HTTP2_HEADER_AUTHORITY]: RELAY_AUTHORITY, [RELAY_HEADER]: encodeRelay(target, { ...ticket, decided: ticket.decided }, me) }, { endStream: false });
      countStream(session, stream);
    } catch {
      passOver(carrier);
      return 'retry';
    }
    // A reset by the carrying instance (its publisher lost, the instance going away) is an error, never a clean end.
    stream.once('aborted', () => stream.destroy(new Error(`relay ${ticket.id} cut by instance ${carrier.instance}`)));
    const answer = await connectAnswer(stream, timeoutMs);
    if (!answer.ok) {
      // The instance is gone or not answering (killed, partitioned): other instances may carry the same publisher.
      if (answer.kind !== 'timeout') passOver(carrier);
      return answer.kind === 'timeout' ? refused(`relay to instance ${carrier.instance}: ${answer.why}`) : 'retry';
    }
    if (answer.status === 200) return { ok: true, stream };
    stream.destroy();
    const why = String(answer.headers[RELAY_ERROR_HEADER] ?? `status ${answer.status}`).slice(0, 300);
    return upstreamRefusal(refuse(answer.status === 503 ? 'GH_NOT_PUBLISHED' : 'GH_UPSTREAM_UNAVAILABLE', `relay to instance ${carrier.instance}: ${why}`));
  }

  const open: RemoteCarriers['open'] = async (target, timeoutMs) => {
    const ticket = target.relay;
    const first = view.carriers(target.user, target.service, ticket.fingerprint).find((c) => c.instance === ticket.instance);
    if (!first) return upstreamRefusal(refuse('GH_NOT_PUBLISHED', `${target.label}: instance ${ticket.instance}'s lease ended during admission`));
    const opened = await attempt(target, first, timeoutMs);
    if (opened !== 'retry') return opened;
    // Once, on another instance carrying a publisher with the certificate the policy decided on; the records name it.
    const next = choose(target.user, target.service, ticket.fingerprint, first.instanceId);
    if (!next) return refused(`relay to instance ${first.instance}: not reachable`);
    ticket.instance = next.instance;
    ticket.publisher = next.publisher;
    const again = await attempt(target, next, timeoutMs);
    return again === 'retry' ? refused(`relay to instances ${first.instance} and ${next.instance}: not reachable`) : again;
  };

  return {
    find,
    open,
    close() {
      for (const session of sessions.values()) session.destroy();
      sessions.clear();
    },
  };
}
