// One stream to a published service: an HTTP/2 CONNECT over the chosen replica's connection, counted on
// the replica while open, answered within the connect timeout or refused with the publisher's reason.
import { constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { UpstreamConnection } from './openUpstream.ts';
import { refuse } from '../errors/refusal.ts';
import { connectAnswer } from './connectAnswer.ts';
import { upstreamRefusal, type UpstreamRefusal } from './openUpstream.ts';
import { DATAGRAMS_HEADER, STREAM_ERROR_HEADER } from './publishProtocol.ts';
import { tallyOf, type Entry, type Published } from './publisherRegistry.ts';

export function notPublished(target: Published, why = 'nobody publishes it'): UpstreamRefusal {
  return upstreamRefusal(refuse('GH_NOT_PUBLISHED', `${target.label}: ${why}`));
}

/**
 * A stream of the wrong kind for the service `entry` publishes: a UDP service is reached by datagram streams
 * only (udp routes), any other service by byte streams only. Undefined when they match.
 */
export function wrongKind(entry: Entry, target: Published, datagrams: boolean): UpstreamRefusal | undefined {
  const udpService = entry.udp?.includes(target.service) === true;
  if (udpService === datagrams) return undefined;
  return udpService
    ? upstreamRefusal(refuse('GH_NOT_PUBLISHED', `${target.label} is a UDP service (publisher ${entry.id}): only a udp route reaches it`, { clientReason: 'service is published as UDP; use a udp route' }))
    : upstreamRefusal(refuse('GH_NOT_PUBLISHED', `${target.label} is not a UDP service (publisher ${entry.id} publishes it as a stream): a udp route cannot reach it`, { clientReason: 'service is not published as UDP' }));
}

/**
 * Opens `target`'s stream on `entry`, whose connection is `session`. `retry` is called (at most once, by the caller's choice) when the
 * replica refused the stream unprocessed (REFUSED_STREAM: leaving, RFC 9113 8.7), so another may take it.
 * `datagrams`: the stream is one UDP flow (DATAGRAM capsules), marked so the publisher knows.
 */
export function openPublishedStream(entry: Entry, session: ClientHttp2Session, target: Published, timeoutMs: number, retry: (() => Promise<UpstreamConnection>) | undefined, datagrams = false): Promise<UpstreamConnection> {
  let stream: ClientHttp2Stream;
  try {
    stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'CONNECT', [h2.HTTP2_HEADER_AUTHORITY]: target.service, ...(datagrams && { [DATAGRAMS_HEADER]: '?1' }) }, { endStream: false });
  } catch (err) {
    return Promise.resolve(notPublished(target, `publisher connection unusable: ${(err as Error).message}`));
  }
  const tally = countOpen(entry, target.service, stream);
  // A reset by the publisher ends the stream now, even with writes queued behind flow control (see publishStreams.ts).
  stream.once('aborted', () => stream.destroy());
  return connectAnswer(stream, timeoutMs).then((answer): UpstreamConnection | Promise<UpstreamConnection> => {
    // Refused unprocessed (a replica leaving, RFC 9113 8.7): safe to open on another replica, once.
    if (!answer.ok && answer.refusedUnprocessed && retry) return retry();
    if (!answer.ok) return upstreamRefusal(refuse(answer.kind === 'closed' ? 'GH_NOT_PUBLISHED' : 'GH_UPSTREAM_UNAVAILABLE', `publisher ${entry.id}: ${answer.why}`));
    if (answer.status !== 200) {
      const why = String(answer.headers[STREAM_ERROR_HEADER] ?? `status ${answer.status}`).slice(0, 200);
      stream.destroy();
      return upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', `publisher ${entry.id}: ${why}`));
    }
    entry.streamsServed += 1;
    tally.served += 1;
    return { ok: true, stream };
  });
}

/** Counts `stream` open on `entry` (and its service) until it closes; a new stream nudges the liveness check. */
function countOpen(entry: Entry, service: string, stream: ClientHttp2Stream): { open: number; served: number } {
  const tally = tallyOf(entry, service);
  entry.streamsOpen += 1;
  tally.open += 1;
  entry.streams.add(stream);
  entry.nudge();
  stream.once('close', () => {
    entry.streamsOpen -= 1;
    tally.open -= 1;
    entry.streams.delete(stream);
  });
  return tally;
}
