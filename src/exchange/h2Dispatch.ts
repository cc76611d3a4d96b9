// Dispatch of HTTP/2 streams: the listener speaks h2 for RFC 9298 extended CONNECT alone, so a stream is a
// CONNECT-UDP to a UDP endpoint path, or it is refused with a record (everything else is served on HTTP/1.1).
import type { IncomingHttpHeaders } from 'node:http';
import { constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { redactTarget } from '../forward/redactTarget.ts';
import { reservedPath } from '../routing/reservedPaths.ts';
import { CONNECT_UDP } from '../tunnel/udpChannel.ts';
import type { ConnectionContext } from './connection.ts';
import type { DispatchTargets } from './dispatch.ts';
import { enter } from './enter.ts';
import { refuseUncounted } from './exchange.ts';

/** Refused streams one session may open before it is ended (GOAWAY ENHANCE_YOUR_CALM): each costs a dispatch. */
const MAX_REFUSED_STREAMS = 100;

const refusedStreams = new WeakMap<ServerHttp2Session, number>();

/**
 * Counts a refused stream against its session; past the limit the whole session goes. The session is the one
 * taken when the stream arrived: a stream reset in the same read (HEADERS + RST_STREAM) has none of its own by now.
 */
function spendRefusal(session: ServerHttp2Session): void {
  const refused = (refusedStreams.get(session) ?? 0) + 1;
  refusedStreams.set(session, refused);
  if (refused > MAX_REFUSED_STREAMS) session.destroy(undefined, constants.NGHTTP2_ENHANCE_YOUR_CALM);
}

/**
 * The listener's stream handler. A request other than `CONNECT` with `:protocol connect-udp` gets RST_STREAM
 * HTTP_1_1_REQUIRED (RFC 9113 §7): it is served, over HTTP/1.1, and an h2 client knows to go there. Its record
 * says 426 (Upgrade Required: the same meaning), which also puts it under the client's refusal-record budget.
 */
export function dispatchStream(to: Pick<DispatchTargets, 'sinks' | 'udpH2'>) {
  return (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, conn: ConnectionContext | undefined, session: ServerHttp2Session): void | Promise<void> => {
    const method = String(headers[':method'] ?? '');
    const path = String(headers[':path'] ?? '');
    const extended = method === 'CONNECT' && headers[':protocol'] === CONNECT_UDP;
    const reserved = extended ? reservedPath(path) : undefined;
    if (conn && reserved?.kind === 'udp') return enter(to.udpH2, conn, to.udpH2.arrive(stream, headers, reserved));
    spendRefusal(session);
    // No certificate (certificate logins): its pages are HTTP/1.1, and no record can name a client.
    if (!conn) return void stream.close(constants.NGHTTP2_HTTP_1_1_REQUIRED);
    const target = redactTarget(path.slice(0, 200));
    if (extended) {
      refuseUncounted(conn, to.sinks, { protocol: 'udp', method, target, decision: 'deny', status: 404, reason: 'CONNECT-UDP to a path that is no UDP endpoint', detail: { transport: 'h2-connect-udp' } });
      stream.respond({ ':status': 404, 'content-type': 'application/json' });
      return void stream.end('{"error":"no such UDP endpoint"}\n');
    }
    const asked = headers[':protocol'] === undefined ? method : `${method} :protocol ${String(headers[':protocol']).slice(0, 40)}`;
    refuseUncounted(conn, to.sinks, { protocol: 'http', method, target, decision: 'deny', status: 426, reason: `HTTP/2 carries CONNECT-UDP only: ${asked.slice(0, 80)} reset with HTTP_1_1_REQUIRED`, detail: { transport: 'h2' } });
    stream.close(constants.NGHTTP2_HTTP_1_1_REQUIRED);
  };
}
