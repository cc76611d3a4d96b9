// One HTTP exchange with an upstream through an undici dispatcher: the response's status, the headers
// upstreamHeaders.ts lets through and the body chunks go straight into the client's response, counted.
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Lease } from './upstreamPools.ts';
import type { PrefixRewrite } from './prefixRewrite.ts';
import { refuse, RefusalError } from '../errors/refusal.ts';
import { sendRefusal } from './refusals.ts';
import { downstreamResponseHeaders } from './upstreamHeaders.ts';

export interface UpstreamRequest {
  method: string;
  path: string;
  /** From upstreamRequestHeaders; framing fields excepted (undici states them from `body`). */
  headers: Record<string, string | string[]>;
  /** null when the request has no body; undici sends chunked unless `content-length` is in `headers`. */
  body: Readable | null;
  prefix?: PrefixRewrite;
}

/** What the audit record needs once the client's response has closed. */
export interface ExchangeOutcome {
  bytesOut: number;
  /** The upstream stopped mid-response (the client was cut off). */
  truncated: boolean;
  /** The upstream could not be used: status and reason for the record (the client got a refusal). */
  upstreamError?: { status: number; reason: string };
}

/**
 * Called when the upstream failed before any of the answer was sent to the client: true when the caller
 * sends the request again (another replica) and answers the client from there; false to refuse it here.
 */
export type SendElsewhere = () => boolean;

/** Why an upstream failed, in the record's words: the system's code where there is one, else undici's message. */
function reasonOf(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && !code.startsWith('UND_ERR')) return code;
  return err.name === 'HTTPParserError' ? `HTTP parse error: ${err.message}` : err.message;
}

/** Response header fields as strings (undici hands them over as the raw bytes, latin1 like node:http's). */
function latin1Strings(raw: readonly Buffer[]): string[] {
  const out = new Array<string>(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = (raw[i] as Buffer).toString('latin1');
  return out;
}

/**
 * undici's handler interface: callbacks instead of a response object and a stream, which is what makes
 * this path cheap (no IncomingMessage, no pipe). Backpressure: returning false from onData pauses the
 * upstream socket until the client's response drains.
 */
class ResponseRelay implements Dispatcher.DispatchHandler, ExchangeOutcome {
  bytesOut = 0;
  truncated = false;
  upstreamError?: { status: number; reason: string };
  readonly #res: ServerResponse;
  readonly #prefix: PrefixRewrite | undefined;
  readonly #lease: Lease;
  readonly #elsewhere: SendElsewhere | undefined;
  /** undici is done with the connection (answered or failed), or it was discarded. */
  #settled = false;

  constructor(res: ServerResponse, prefix: PrefixRewrite | undefined, lease: Lease, elsewhere: SendElsewhere | undefined) {
    this.#res = res;
    this.#prefix = prefix;
    this.#lease = lease;
    this.#elsewhere = elsewhere;
  }

  /** The client left: an exchange still under way ends with its upstream connection. */
  abort(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#lease.discard();
  }

  /** The connection is free for the next exchange. */
  #settle(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#lease.release();
  }

  // undici hands over its abort here; this relay ends a running exchange through the lease instead
  // (destroying the connection), which undici's abort would replace with a fresh one (upstreamPools.ts).
  onConnect(): void {}

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    // Interim answers (103 Early Hints) are not passed on, as before; the final one follows.
    if (statusCode < 200) return true;
    const res = this.#res;
    if (res.headersSent || res.destroyed) {
      this.abort();
      return false;
    }
    try {
      res.writeHead(statusCode, statusText, downstreamResponseHeaders(latin1Strings(rawHeaders), this.#prefix ? { prefix: this.#prefix } : {}));
    } catch (err) {
      // Whatever an upstream answers must never throw out of this handler.
      this.upstreamError = { status: 502, reason: `unusable response head: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
      this.abort();
      sendRefusal(res, refuse('GH_UPSTREAM_UNAVAILABLE', this.upstreamError.reason));
      return false;
    }
    res.on('drain', resume);
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.bytesOut += chunk.length;
    return this.#res.write(chunk);
  }

  onComplete(): void {
    this.#settle();
    this.#res.end();
  }

  onError(err: Error): void {
    // A discarded connection's error is the discard itself (the client left, or the head was unusable).
    if (this.#settled) return;
    this.#settle();
    const res = this.#res;
    if (res.headersSent) {
      // An upstream that dies mid-body must not leave the client waiting forever: cut the client off.
      this.truncated = true;
      res.destroy();
      return;
    }
    // Nothing of the answer reached the client: the caller may send the request again elsewhere.
    if (!res.destroyed && this.#elsewhere?.()) return;
    // A stream-only upstream that refused to open (a published service busy, not published, or the
    // gateway stopping) gives the client its status and words, not a generic 502.
    const refusal = err instanceof RefusalError ? err.refusal : refuse('GH_UPSTREAM_UNAVAILABLE', reasonOf(err));
    this.upstreamError = { status: refusal.status, reason: refusal.reason };
    sendRefusal(res, refusal);
  }
}

/**
 * Sends `request` over the leased connection and relays the answer into `res`. The returned outcome fills in
 * as the exchange goes; `abort()` is for the client leaving before the response completed. `elsewhere` is
 * asked before a failure with nothing sent yet is refused.
 */
export function relayExchange(lease: Lease, request: UpstreamRequest, res: ServerResponse, elsewhere?: SendElsewhere): ExchangeOutcome & { abort(): void } {
  const relay = new ResponseRelay(res, request.prefix, lease, elsewhere);
  lease.dispatcher.dispatch({ method: request.method as Dispatcher.HttpMethod, path: request.path, headers: request.headers, body: request.body }, relay);
  return relay;
}
