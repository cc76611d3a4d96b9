// How the gateway says no: a status and a short JSON reason for the client (never internals, which go
// to the audit log), on an HTTP response or on a raw socket that has left HTTP parsing.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { refusalBody, type Refusal } from '../errors/refusal.ts';

/** For a socket that left HTTP parsing: its errors are the peer's, not the gateway's to crash on (one function, not one per socket). */
export function ignoreSocketErrors(): void {}

/** The headers and JSON body of a refusal. */
export function refusal(status: number, clientReason: string, extra: Record<string, string | number> = {}): { headers: Record<string, string | number>; body: string } {
  const body = refusalBody(clientReason);
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra };
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="gatehouse"';
  return { headers, body };
}

/**
 * Sends a refusal on an HTTP response. When the request's body has not been read (or was never going
 * to be: an unauthorized upload), the connection is closed after the answer, so a client cannot keep
 * the gateway reading a body it will never forward.
 */
export function sendRefusal(res: ServerResponse, refused: Refusal): void {
  const { status, clientReason } = refused;
  const extra = refused.headers ?? {};
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const req = res.req as IncomingMessage | undefined;
  const unread = req !== undefined && !req.complete;
  const { headers, body } = refusal(status, clientReason, unread ? { ...extra, connection: 'close' } : extra);
  if (unread) {
    res.shouldKeepAlive = false;
    // Once the answer is out, stop reading: Node would otherwise drain the body for keep-alive.
    res.once('finish', () => setImmediate(() => req.socket.destroySoon()));
    const timer = setTimeout(() => req.socket.destroy(), 2_000);
    timer.unref();
  }
  res.writeHead(status, headers).end(body);
}

/** Answers on a socket that has left HTTP parsing (upgrade, CONNECT): status + JSON body, then close. */
export function sendRefusalOnSocket(socket: Duplex, refused: Refusal): void {
  if (socket.destroyed || !socket.writable) return void socket.destroy();
  const { status } = refused;
  const { headers, body } = refusal(status, refused.clientReason, refused.headers);
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), 'connection: close'];
  socket.resume(); // read and drop whatever the client still sends, so closing does not reset the answer away
  socket.end(lines.join('\r\n') + '\r\n\r\n' + body);
  setTimeout(() => socket.destroy(), 2_000).unref();
}
