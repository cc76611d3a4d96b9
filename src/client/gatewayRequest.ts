// One request to the gateway on a fresh mTLS connection, read up to the response head: the shared first
// step of the CONNECT transport and of the publisher's upgrade. A refusal's short body becomes its reason.
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { tlsOptions, type GatewayEndpoint } from './gatewayEndpoint.ts';
import type { TunnelReads } from './tunnelReads.ts';
import { classifyError, refusalReason, type TunnelFailure } from './tunnelFailure.ts';

const MAX_HEAD = 16 * 1024;
const MAX_ERROR_BODY = 64 * 1024;

export interface ResponseHead {
  status: number;
  statusText: string;
  contentLength: number | undefined;
  /** Bytes after the blank line: the next protocol's bytes on success, body bytes otherwise. */
  rest: Buffer;
}

export function parseHead(head: string, rest: Buffer): ResponseHead | undefined {
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const lengthLine = lines.find((l) => /^content-length:/i.test(l));
  const length = lengthLine ? Number(lengthLine.slice(lengthLine.indexOf(':') + 1).trim()) : undefined;
  return { status: Number(m[1]), statusText: m[2] ?? '', contentLength: Number.isFinite(length) ? length : undefined, rest };
}

/** A header's value in a response head ('' when absent). */
export function headerValue(headText: string, name: string): string {
  const line = headText.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line ? line.slice(name.length + 1).trim() : '';
}

export type GatewayResponse =
  /**
   * The socket is paused, with any bytes after the head put back (with `reads`: in `early`, and the
   * socket's further bytes go to `reads.sink` once resumed): the caller's protocol starts there.
   */
  | { ok: true; socket: TLSSocket; headText: string; early: Buffer }
  | { ok: false; failure: TunnelFailure };

export interface GatewayRequest {
  /** The request head, without the final blank line. */
  lines: (endpoint: GatewayEndpoint) => string[];
  /** The status that hands the connection over (200 for CONNECT, 101 for an upgrade). */
  success: number;
  /** Keep the write side open when the gateway ends its side (a tunnel's half-close). */
  allowHalfOpen?: boolean;
  timeoutMs?: number;
  /** Read the socket into reused memory (see TunnelReads) instead of 'data' events. */
  reads?: TunnelReads;
  /** How much may wait to be written before write() asks the writer to pause (stream default: 64 KiB). */
  highWaterMark?: number;
}

/** Sends one request and resolves once its response head is in: success, or the gateway's refusal and reason. */
export function requestOverTls(endpoint: GatewayEndpoint, request: GatewayRequest): Promise<GatewayResponse> {
  const timeoutMs = request.timeoutMs ?? 20_000;
  return new Promise((resolve) => {
    // allowHalfOpen (honoured by tls.connect, missing from its types): the gateway's FIN must not end our side.
    const reads = request.reads;
    const socket: TLSSocket = connect({ ...tlsOptions(endpoint), ...(request.allowHalfOpen && { allowHalfOpen: true }), ...(reads && { onread: reads.onread }), ...(request.highWaterMark && { highWaterMark: request.highWaterMark }) } as ConnectionOptions);
    let settled = false;
    let received = Buffer.alloc(0);
    let refusal: ResponseHead | undefined;

    const finish = (result: GatewayResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (reads) reads.hold();
      else socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (!result.ok) {
        // TLS may still report the failure (a reset during the handshake emits 'error' after 'end'):
        // the socket is given up, and an error on it must not reach the process.
        socket.on('error', () => {});
        socket.destroy();
      }
      resolve(result);
    };
    const refused = (h: ResponseHead, body: Buffer) =>
      finish({ ok: false, failure: { kind: 'refused', status: h.status, reason: refusalReason(body.toString('utf8'), h.statusText) } });
    const bodyComplete = (h: ResponseHead) => h.rest.length >= (h.contentLength ?? MAX_ERROR_BODY) || h.contentLength === 0;

    const onData = (chunk: Buffer) => {
      if (refusal) {
        // Reading a refusal's body.
        refusal.rest = Buffer.concat([refusal.rest, chunk]);
        if (bodyComplete(refusal)) refused(refusal, refusal.rest.subarray(0, refusal.contentLength ?? MAX_ERROR_BODY));
        return;
      }
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) {
        if (received.length > MAX_HEAD) finish({ ok: false, failure: { kind: 'protocol', detail: 'response header too large' } });
        return;
      }
      const headText = received.subarray(0, end).toString('latin1');
      const head = parseHead(headText, received.subarray(end + 4));
      if (!head) return finish({ ok: false, failure: { kind: 'protocol', detail: `not an HTTP response: ${JSON.stringify(received.subarray(0, 40).toString('latin1'))}` } });
      if (head.status !== request.success) {
        refusal = head;
        if (bodyComplete(head)) refused(head, head.rest.subarray(0, head.contentLength ?? MAX_ERROR_BODY));
        return;
      }
      socket.pause();
      // The next protocol's first bytes may have come with the head: put them back for its reader.
      if (head.rest.length > 0 && !reads) socket.unshift(head.rest);
      finish({ ok: true, socket, headText, early: reads ? head.rest : Buffer.alloc(0) });
    };
    const onEnd = () => {
      if (refusal) return refused(refusal, refusal.rest);
      finish({ ok: false, failure: { kind: 'network', code: 'CLOSED', detail: 'connection closed before a response' } });
    };
    const onError = (err: Error) => finish({ ok: false, failure: classifyError(err) });
    const timer = setTimeout(() => finish({ ok: false, failure: { kind: 'network', code: 'TIMEOUT', detail: `no answer within ${timeoutMs} ms` } }), timeoutMs);

    if (reads) {
      // The head is parsed from copies (the memory is read into again); once it is in, reading pauses
      // until the caller's sink takes over.
      reads.sink = (chunk, release) => {
        onData(Buffer.from(chunk));
        release();
        return !settled;
      };
    } else socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.once('secureConnect', () => socket.write(request.lines(endpoint).join('\r\n') + '\r\n\r\n'));
  });
}
