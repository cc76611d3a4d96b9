// A raw mTLS client for hostile-input tests: writes bytes exactly as given, collects every byte the
// gateway answers with, and parses the HTTP responses (pipelined, 1xx, chunked) out of them.
import { connect, type TLSSocket } from 'node:tls';

export interface RawClientTarget {
  port: number;
  host?: string;
  /** PEM contents: the CA that signed the gateway's certificate, and the client certificate + key (none: a client without one). */
  ca: string;
  cert?: string;
  key?: string;
}

export interface ParsedResponse {
  version: string;
  status: number;
  reason: string;
  /** Header fields in order, names as the gateway wrote them (duplicates kept). */
  headers: Array<[string, string]>;
  /** Every value of a header (name case-insensitive). */
  all(name: string): string[];
  /** The single value of a header, or undefined; several values are joined with ", ". */
  header(name: string): string | undefined;
  body: Buffer;
  /** The body as UTF-8 text. */
  text: string;
  /** True when the body was complete (framed by length or chunks, or ended by the close). */
  complete: boolean;
}

export interface RawExchange {
  /** Every byte the gateway sent. */
  raw: Buffer;
  responses: ParsedResponse[];
  /** Final (non-1xx) responses only. */
  finals: ParsedResponse[];
  /** The gateway closed (FIN or reset) before the exchange ended. */
  closedByGateway: boolean;
  /** Local port of the client socket: the audit `source` is `127.0.0.1:<localPort>`. */
  localPort: number;
  /** When the connection was opened (ms since the epoch): tells this connection from an earlier one on the same port. */
  startedAt: number;
  /** The TLS handshake or socket failed (e.g. certificate refused): the error message. */
  error?: string;
}

export interface ExchangeOptions {
  /** Finish once this many final responses are complete and the line is quiet for `quietMs`. */
  expectResponses?: number;
  /** Quiet period that ends the exchange (default 150 ms after the expected responses, 1000 ms otherwise). */
  quietMs?: number;
  /** Hard deadline for the whole exchange (default 8000 ms). */
  timeoutMs?: number;
  /** Methods of the requests in order: a response to HEAD has no body. */
  methods?: string[];
  /** Wait for the gateway to close (up to the deadline) instead of ending on a quiet line. */
  untilClosed?: boolean;
}

const CRLF = Buffer.from('\r\n');

function makeResponse(version: string, status: number, reason: string, headers: Array<[string, string]>, body: Buffer, complete: boolean): ParsedResponse {
  const all = (name: string) => headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  return {
    version,
    status,
    reason,
    headers,
    all,
    header: (name) => {
      const values = all(name);
      return values.length === 0 ? undefined : values.join(', ');
    },
    body,
    text: body.toString('utf8'),
    complete,
  };
}

/** Decodes a chunked body starting at `at`; returns the body and the offset after it, or undefined if incomplete. */
function readChunked(buf: Buffer, at: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let pos = at;
  for (;;) {
    const eol = buf.indexOf(CRLF, pos);
    if (eol < 0) return undefined;
    const size = parseInt(buf.subarray(pos, eol).toString('latin1').split(';')[0]!.trim(), 16);
    if (!Number.isFinite(size)) return undefined;
    pos = eol + 2;
    if (size === 0) {
      // Trailers, then an empty line.
      for (;;) {
        const tEol = buf.indexOf(CRLF, pos);
        if (tEol < 0) return undefined;
        const empty = tEol === pos;
        pos = tEol + 2;
        if (empty) return { body: Buffer.concat(parts), end: pos };
      }
    }
    if (buf.length < pos + size + 2) return undefined;
    parts.push(buf.subarray(pos, pos + size));
    pos += size + 2;
  }
}

/**
 * Parses consecutive HTTP/1.x responses out of `buf`. `closed` says the stream ended, so a body
 * without framing runs to the end. `methods` maps final responses to requests (HEAD has no body).
 */
export function parseResponses(buf: Buffer, closed: boolean, methods: string[] = []): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let pos = 0;
  let finals = 0;
  while (pos < buf.length) {
    const headEnd = buf.indexOf('\r\n\r\n', pos);
    if (headEnd < 0) break;
    const lines = buf.subarray(pos, headEnd).toString('latin1').split('\r\n');
    const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
    if (!m) break;
    const status = Number(m[2]);
    const headers: Array<[string, string]> = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
    const find = (n: string) => headers.find(([k]) => k.toLowerCase() === n)?.[1];
    pos = headEnd + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      out.push(makeResponse(m[1]!, status, m[3] ?? '', headers, Buffer.alloc(0), true));
      continue;
    }
    const method = (methods[finals] ?? 'GET').toUpperCase();
    finals++;
    const te = find('transfer-encoding');
    const cl = find('content-length');
    if (status === 101 || status === 204 || status === 304 || method === 'HEAD') {
      out.push(makeResponse(m[1]!, status, m[3] ?? '', headers, Buffer.alloc(0), true));
      if (status === 101) break;
    } else if (te !== undefined && /chunked\s*$/i.test(te)) {
      const chunked = readChunked(buf, pos);
      if (!chunked) {
        out.push(makeResponse(m[1]!, status, m[3] ?? '', headers, buf.subarray(pos), false));
        break;
      }
      out.push(makeResponse(m[1]!, status, m[3] ?? '', headers, chunked.body, true));
      pos = chunked.end;
    } else if (cl !== undefined && /^\d+$/.test(cl)) {
      const n = Number(cl);
      const complete = buf.length >= pos + n;
      out.push(makeResponse(m[1]!, status, m[3] ?? '', headers, buf.subarray(pos, Math.min(buf.length, pos + n)), complete));
      if (!complete) break;
      pos += n;
    } else {
      out.push(makeResponse(m[1]!, status, m[3] ?? '', headers, buf.subarray(pos), closed));
      break;
    }
  }
  return out;
}

/** A live raw connection: send bytes in steps, wait for answers, then finish. */
export class RawConnection {
  readonly socket: TLSSocket;
  private readonly received: Buffer[] = [];
  private closed = false;
  private lastActivity = Date.now();
  private error: string | undefined;
  private readonly ready: Promise<void>;
  private methods: string[] = [];
  // Read once connected: a destroyed socket forgets its local port.
  private localPort = 0;
  private readonly startedAt = Date.now();

  constructor(target: RawClientTarget) {
    this.socket = connect({ host: target.host ?? '127.0.0.1', port: target.port, ca: target.ca, cert: target.cert, key: target.key, servername: 'localhost' });
    this.socket.on('data', (d: Buffer) => {
      this.received.push(d);
      this.lastActivity = Date.now();
    });
    const markClosed = () => {
      this.closed = true;
      this.lastActivity = Date.now();
    };
    this.socket.on('end', markClosed);
    this.socket.on('close', markClosed);
    this.socket.on('error', (e) => {
      this.error ??= e.message;
      markClosed();
    });
    this.socket.once('connect', () => (this.localPort = this.socket.localPort ?? 0));
    this.ready = new Promise<void>((ok) => {
      this.socket.once('secureConnect', () => ok());
      this.socket.once('close', () => ok());
    });
  }

  /** Writes bytes exactly as given (after the handshake). */
  async send(bytes: string | Buffer): Promise<void> {
    await this.ready;
    if (this.closed || this.socket.destroyed) return;
    this.lastActivity = Date.now();
    await new Promise<void>((ok) => this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, () => ok()));
  }

  /** Declares the methods of the requests sent so far (for responses without a body to HEAD). */
  expectMethods(methods: string[]): void {
    this.methods = methods;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  snapshot(): RawExchange {
    const raw = Buffer.concat(this.received);
    const responses = parseResponses(raw, this.closed, this.methods);
    return {
      raw,
      responses,
      finals: responses.filter((r) => r.status >= 200 || r.status === 101),
      closedByGateway: this.closed,
      localPort: this.localPort,
      startedAt: this.startedAt,
      ...(this.error === undefined ? {} : { error: this.error }),
    };
  }

  /** Waits until `done(snapshot)` holds, the gateway closes, or `timeoutMs` passes. */
  async waitUntil(done: (x: RawExchange) => boolean, timeoutMs = 8000): Promise<RawExchange> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const snap = this.snapshot();
      if (done(snap) || this.closed || Date.now() > until) return snap;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * Waits for `expectResponses` complete final responses and a quiet line, or for the close, or the
   * deadline; then closes the client side and returns everything received.
   */
  async finish(opts: ExchangeOptions = {}): Promise<RawExchange> {
    await this.ready;
    const until = Date.now() + (opts.timeoutMs ?? 8000);
    const expect = opts.expectResponses;
    const quietMs = opts.quietMs ?? (expect === undefined ? 1000 : 150);
    for (;;) {
      if (this.closed || Date.now() > until) break;
      const quiet = Date.now() - this.lastActivity >= quietMs;
      if (opts.untilClosed) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      if (expect === undefined && quiet) break;
      if (expect !== undefined && quiet) {
        const finals = this.snapshot().finals.filter((r) => r.complete);
        if (finals.length >= expect) break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const snap = this.snapshot();
    this.socket.destroy();
    return snap;
  }
}

/** One-shot: connect, write `bytes`, collect until close or quiet, parse. */
export async function rawExchange(target: RawClientTarget, bytes: string | Buffer, opts: ExchangeOptions = {}): Promise<RawExchange> {
  const conn = new RawConnection(target);
  if (opts.methods) conn.expectMethods(opts.methods);
  await conn.send(bytes);
  return conn.finish(opts);
}
