// A UDP flow's HTTP/2 side (RFC 9298 §3.5, RFC 8441): the request's checks, a refusal as a HEADERS response,
// and success as `:status 200` with `capsule-protocol: ?1`, the DATAGRAM capsules then riding the stream's DATA.
import type { IncomingHttpHeaders } from 'node:http';
import { constants, type ServerHttp2Stream } from 'node:http2';
import type { Refused } from '../exchange/admit.ts';
import { refuse, type Refusal } from '../errors/refusal.ts';
import { CapsuleChannel, type DatagramChannel } from '../tunnel/udpChannel.ts';
import { refusal as refusalParts } from './refusals.ts';
import { malformed } from './tunnelWayIn.ts';

/** Once the gateway ended its side, a client that does not end its own keeps the stream no longer than this. */
const LINGER_MS = 1000;

/**
 * After the gateway's END_STREAM (a refusal, a flow closed by idle timeout or shutdown), RST_STREAM NO_ERROR
 * if the client has not ended its side (RFC 9113 §8.1): a half-closed stream would hold its session (GOAWAY waits).
 */
function closeAfterOurEnd(stream: ServerHttp2Stream): void {
  stream.once('finish', () => setTimeout(() => stream.closed || stream.close(constants.NGHTTP2_NO_ERROR), LINGER_MS).unref());
}

export interface UdpOverH2 {
  accept(queueBytes: number, run: (channel: DatagramChannel, status: number) => void, gone: () => void): void;
  refuse(refusal: Refusal): void;
}

/** RFC 9298 §3.5 (with RFC 8441 §4): `:scheme https`, a `:path` and an `:authority`; the capsule protocol on, if said. */
export function screenH2(headers: IncomingHttpHeaders, early: Parameters<typeof malformed>[1]): Refused | undefined {
  if (headers[':scheme'] !== 'https') return malformed(refuse('GH_BAD_UPGRADE', `CONNECT-UDP over HTTP/2 with :scheme ${JSON.stringify(String(headers[':scheme'] ?? '').slice(0, 20))}`, { clientReason: 'expected :scheme https' }), early);
  if (!headers[':authority']) return malformed(refuse('GH_BAD_REQUEST', 'CONNECT-UDP over HTTP/2 without :authority', { clientReason: 'expected :authority' }), early);
  const capsules = headers['capsule-protocol'];
  if (capsules !== undefined && String(capsules).trim() !== '?1') return malformed(refuse('GH_BAD_UPGRADE', `capsule-protocol ${JSON.stringify(String(capsules).slice(0, 20))}`, { clientReason: 'expected capsule-protocol: ?1' }), early);
  return undefined;
}

/** The stream's answers: a refusal, or the flow's 200 and its channel. */
export function acceptOverH2(stream: ServerHttp2Stream): UdpOverH2 {
  return {
    accept(queueBytes, run, gone) {
      if (stream.destroyed || stream.closed) return gone();
      stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
      // RFC 9297 §3.3: a malformed capsule makes the message malformed, a stream error PROTOCOL_ERROR (RFC 9113
      // §8.1.1); the gateway's own cuts (revocation, an upstream gone) say CANCEL. Neither is a clean end.
      const cut = (malformedCapsule: boolean) => stream.close(malformedCapsule ? constants.NGHTTP2_PROTOCOL_ERROR : constants.NGHTTP2_CANCEL);
      closeAfterOurEnd(stream);
      run(new CapsuleChannel(stream, queueBytes, undefined, cut), 200);
    },
    refuse(refusal) {
      if (stream.destroyed || stream.closed) return;
      if (stream.headersSent) return void stream.close(constants.NGHTTP2_CANCEL);
      const { headers, body } = refusalParts(refusal.status, refusal.clientReason, refusal.headers);
      stream.respond({ ':status': refusal.status, ...headers });
      // Whatever the client still sends is read and dropped; one that never ends its side is reset.
      closeAfterOurEnd(stream);
      stream.end(body);
      stream.resume();
    },
  };
}
