// The answer to an HTTP/2 CONNECT the gateway opened (to a publisher, or to another instance for a relay):
// its status and headers, or why none came (no answer in time, an error, the stream closed first).
import { constants as h2, type ClientHttp2Stream, type IncomingHttpHeaders, type IncomingHttpStatusHeader } from 'node:http2';

export type ConnectAnswer =
  | { ok: true; status: number; headers: IncomingHttpHeaders & IncomingHttpStatusHeader }
  /** `closed`: ended before an answer; `refusedUnprocessed`: reset with REFUSED_STREAM (RFC 9113 8.7), safe to open elsewhere. */
  | { ok: false; kind: 'timeout' | 'error' | 'closed'; why: string; refusedUnprocessed: boolean };

/**
 * Waits for `stream`'s answer up to `timeoutMs`. Without one, the stream is destroyed. With one, the stream
 * keeps a listener for errors: whoever carries it sees them through 'close'.
 */
export function connectAnswer(stream: ClientHttp2Stream, timeoutMs: number): Promise<ConnectAnswer> {
  return new Promise((resolve) => {
    const fail = (kind: 'timeout' | 'error' | 'closed', why: string) => {
      clearTimeout(timer);
      stream.off('error', onError);
      stream.off('close', onClose);
      stream.destroy();
      resolve({ ok: false, kind, why, refusedUnprocessed: stream.rstCode === h2.NGHTTP2_REFUSED_STREAM });
    };
    const timer = setTimeout(() => fail('timeout', `no answer within ${timeoutMs} ms`), timeoutMs);
    // A refused stream also closes: that is where it is reported, as such.
    const onError = (err: NodeJS.ErrnoException) => (stream.rstCode === h2.NGHTTP2_REFUSED_STREAM ? undefined : fail('error', err.code ?? err.message));
    const onClose = () => fail('closed', 'stream closed before an answer');
    stream.once('error', onError);
    stream.once('close', onClose);
    stream.once('response', (headers) => {
      clearTimeout(timer);
      stream.off('error', onError);
      stream.off('close', onClose);
      stream.on('error', () => {});
      resolve({ ok: true, status: Number(headers[h2.HTTP2_HEADER_STATUS]), headers });
    });
  });
}
