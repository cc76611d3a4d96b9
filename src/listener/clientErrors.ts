// What the listener does with a socket whose TLS or HTTP broke: one that never authenticated is
// destroyed; an authenticated one gets 400/408/431 with `connection: close`, one record, then is let go.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { GatewayLimits } from '../config/schema.ts';
import { refuse, refusalBody, type Refusal } from '../errors/refusal.ts';
import { refuseUncounted } from '../exchange/exchange.ts';
import { contextOf } from './connectionContext.ts';
import { responseInFlight } from './listenerTimeouts.ts';

/** A client that does not read its error answer keeps the socket no longer than this. */
const ANSWER_LINGER_MS = 1000;

/** Sockets already answered: a broken parser reports again on every later chunk. */
const answered = new WeakSet<Duplex>();
/** Sockets broken off with a refusal of the listener's own. */
const refused = new WeakSet<Duplex>();

/** Whether the listener broke this connection off with a refusal: a request the parser still hands over is not handled. */
export function brokenOff(socket: Duplex): boolean {
  return refused.has(socket);
}

type ErrorLimits = Pick<GatewayLimits, 'headersTimeoutSeconds' | 'requestTimeoutSeconds' | 'maxHeaderBytes'>;

function refusalFor(err: NodeJS.ErrnoException & { reason?: unknown }, socket: Socket, limits: ErrorLimits): Refusal | undefined {
  const code = err.code ?? '';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    // Node says "timeout" for both deadlines; a request already handed to a handler has its headers.
    return responseInFlight(socket)
      ? refuse('GH_REQUEST_TIMEOUT', `request timeout: body not complete within ${limits.requestTimeoutSeconds} s (limits.requestTimeoutSeconds)`)
      : refuse('GH_REQUEST_TIMEOUT', `request timeout: headers not complete within ${limits.headersTimeoutSeconds} s (limits.headersTimeoutSeconds)`);
  }
  if (code === 'HPE_HEADER_OVERFLOW') return refuse('GH_HEADERS_TOO_LARGE', `header block larger than limits.maxHeaderBytes (${limits.maxHeaderBytes} bytes)`);
  if (code.startsWith('HPE_')) return refuse('GH_BAD_REQUEST', `malformed HTTP: ${code}${err.reason ? ` (${String(err.reason)})` : ''}`);
  // ECONNRESET, EPIPE and the like: the client is gone, there is no one to answer.
  return undefined;
}

/** The server's 'clientError' handler. */
export function handleClientError(err: NodeJS.ErrnoException, duplex: Duplex, refusals: RefusalRecords, limits: ErrorLimits): void {
  const socket = duplex as Socket;
  const ctx = contextOf(socket);
  // Never authenticated (handshake timeout, TLS failure, not TLS at all): nothing may be written into
  // a TLS stream that never started, and ending it would wait on a handshake that will not come,
  // keeping the fd. TLS failures are recorded as tls.reject.
  if (!ctx) {
    socket.destroy();
    return;
  }
  if (answered.has(socket)) return;
  answered.add(socket);
  const refusal = refusalFor(err, socket, limits);
  // A request being handled (a bad chunk or a body timeout after admission) is recorded once, by its
  // forwarder: each request in flight is told why the connection broke.
  if (refusal) {
    refused.add(socket);
    for (const tell of ctx.inFlight) tell({ status: refusal.status, reason: refusal.reason });
  }
  const res = responseInFlight(socket);
  if (!refusal || !socket.writable || res?.headersSent) {
    socket.destroy();
    return;
  }
  // A client with a certificate can open connection after connection of garbage: bounded per certificate.
  if (ctx.inFlight.size === 0) refuseUncounted(ctx, { refusals }, { status: refusal.status, decision: 'deny', reason: refusal.reason });
  const body = refusalBody(refusal.clientReason);
  socket.pause();
  const linger = setTimeout(() => socket.destroy(), ANSWER_LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
  socket.end(
    `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? ''}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}
