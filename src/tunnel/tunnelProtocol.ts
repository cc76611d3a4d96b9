// The WebSocket tunnel protocol (gatehouse-tunnel.v1), written once for the gateway, the client and the tests:
// binary messages carry bytes, the text message {"type":"eof"} half-closes, other JSON types are ignored.
import { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';

export const TUNNEL_SUBPROTOCOL = 'gatehouse-tunnel.v1';
/** The endpoint, `<path><route>`. */
export const TUNNEL_PATH = '/.well-known/gatehouse/tunnel/';

/** The tunnel endpoint's path for a route, as audit records name it. */
export const tunnelEndpointPath = (routeName: string): string => `${TUNNEL_PATH}${routeName}`;
export const EOF_MESSAGE = '{"type":"eof"}';
/** The largest binary message a client may send; senders send what they read, typically <= 64 KiB. */
export const MAX_MESSAGE_BYTES = 4 << 20;
/** Close codes: a normal end, an upstream (or other peer) error, a protocol error. */
export const CLOSE_NORMAL = 1000;
export const CLOSE_UPSTREAM_ERROR = 1011;
export const CLOSE_PROTOCOL_ERROR = 1002;

/** Writes wait once this much is queued on the WebSocket, and go on when it drops below LOW_WATER. */
export const TUNNEL_HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;
/** After our close frame, a peer that does not answer is cut off after this long. */
const CLOSE_WAIT_MS = 5_000;

export function asBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

/** A text message is a JSON control message: its `type`, or undefined when it is not one. */
export function controlType(data: RawData): string | undefined {
  try {
    const parsed: unknown = JSON.parse(asBuffer(data).toString('utf8'));
    const type = typeof parsed === 'object' && parsed !== null ? (parsed as { type?: unknown }).type : undefined;
    return typeof type === 'string' ? type : undefined;
  } catch {
    return undefined;
  }
}

/** An error that also says which close code the WebSocket under a tunnel stream should send. */
export function closeError(message: string, closeCode: number): Error & { closeCode: number } {
  return Object.assign(new Error(message), { closeCode });
}

/** The peer closed the WebSocket with an abnormal code (the client's view: 1011 is the upstream's failure). */
export class TunnelClosedError extends Error {
  readonly code: number;
  constructor(code: number, reason: string) {
    // The gateway's 1011 reason already reads "upstream error: <code>"; do not say it twice.
    super(code === CLOSE_UPSTREAM_ERROR ? (reason.startsWith('upstream error') ? reason : `upstream error: ${reason || 'no reason given'}`) : `tunnel closed with code ${code}${reason ? `: ${reason}` : ''}`);
    this.code = code;
  }
}

/**
 * How one side of the tunnel treats the WebSocket. The two sides differ because they own different ends
 * of the conversation: the client opened the WebSocket and ends it; the gateway answers and audits it.
 */
export interface TunnelStreamOptions {
  /**
   * Client: once both eofs are exchanged the client closes with 1000 (it opened the WebSocket, so it ends
   * it). Gateway: false, it leaves the close to the client, or to its splice once both sides are done.
   */
  closeAfterBothEof: boolean;
  /**
   * Client: a peer's 1000/1005 is a clean end (what arrived is delivered, bytes still to send are dropped,
   * as a socket's peer would drop them); any other code is a TunnelClosedError the user sees. Gateway:
   * false, any close destroys the stream without an error; its splice judges by whether eof came first.
   */
  peerCloseIsEnd: boolean;
  /**
   * Client: a failed send destroys the stream with that error (the user is told the tunnel broke).
   * Gateway: false, a failed send only fails the write waiting on it; the close that follows ends the
   * stream, so the audit reads the same whichever of the two the socket reported first.
   */
  sendErrorDestroys: boolean;
  /** Node stream buffering (the client reads ahead more to keep a bulk transfer moving). */
  readableHighWaterMark?: number;
  writableHighWaterMark?: number;
}

/** One tunnel's WebSocket seen as a half-closable byte stream, with backpressure. Destroying it closes the WebSocket. */
export class TunnelStream extends Duplex {
  readonly #ws: WebSocket;
  readonly #options: TunnelStreamOptions;
  #sentEof = false;
  #gotEof = false;
  #peerClosed = false;
  #waitingWrite: ((err?: Error | null) => void) | undefined;

  constructor(ws: WebSocket, options: TunnelStreamOptions) {
    const { readableHighWaterMark, writableHighWaterMark } = options;
    super({ allowHalfOpen: true, ...(readableHighWaterMark !== undefined && { readableHighWaterMark }), ...(writableHighWaterMark !== undefined && { writableHighWaterMark }) });
    this.#ws = ws;
    this.#options = options;
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('error', (err) => this.destroy(err));
    ws.on('close', (code, reason) => this.#onClose(code, reason));
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.destroyed) return;
    if (!isBinary) {
      const type = controlType(data);
      if (type === undefined) return void this.destroy(closeError('protocol error: text message is not a control message', CLOSE_PROTOCOL_ERROR));
      if (type !== 'eof' || this.#gotEof) return; // other control messages belong to later versions of the protocol
      this.#gotEof = true;
      this.push(null);
      this.#closeWhenDone();
      return;
    }
    if (this.#gotEof) return void this.destroy(closeError('protocol error: data after eof', CLOSE_PROTOCOL_ERROR));
    // Backpressure: a full read buffer pauses the WebSocket's socket until _read asks for more.
    if (!this.push(asBuffer(data))) this.#ws.pause();
  }

  #onClose(code: number, reason: Buffer): void {
    if (!this.#options.peerCloseIsEnd) {
      // The peer closed the WebSocket: this stream is over, whether or not it sent eof first.
      this.#releaseWrite(new Error('websocket closed'));
      if (!this.destroyed) this.destroy();
      return;
    }
    if (code !== CLOSE_NORMAL && code !== 1005) return void this.destroy(new TunnelClosedError(code, reason.toString('utf8')));
    this.#peerClosed = true;
    this.#releaseWrite();
    if (!this.#gotEof) {
      this.#gotEof = true;
      this.push(null);
    }
    if (this.readableEnded) this.destroy();
    else this.once('end', () => this.destroy());
  }

  override _read(): void {
    if (this.#ws.isPaused) this.#ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.#peerClosed) return callback(); // a clean close dropped what we still had to send
    if (this.#ws.readyState !== WebSocket.OPEN) return callback(new Error('websocket is not open'));
    this.#ws.send(chunk, { binary: true }, (err) => {
      if (err && this.#options.sendErrorDestroys) this.destroy(err);
      this.#releaseWrite(err ?? undefined);
    });
    if (this.#ws.bufferedAmount <= TUNNEL_HIGH_WATER) callback();
    else this.#waitingWrite = callback;
  }

  /** A send completed: let a held write go on once the queue is short again (or at once on error or a clean close). */
  #releaseWrite(err?: Error): void {
    const waiting = this.#waitingWrite;
    if (!waiting || (!err && !this.#peerClosed && this.#ws.bufferedAmount > LOW_WATER)) return;
    this.#waitingWrite = undefined;
    waiting(err);
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.#peerClosed) return callback();
    if (this.#ws.readyState !== WebSocket.OPEN) return callback(new Error('websocket is not open'));
    this.#ws.send(EOF_MESSAGE, { binary: false }, (err) => {
      if (err) return callback(err);
      this.#sentEof = true;
      callback();
      this.#closeWhenDone();
    });
  }

  #closeWhenDone(): void {
    if (this.#options.closeAfterBothEof && this.#sentEof && this.#gotEof && this.#ws.readyState === WebSocket.OPEN) this.#ws.close(CLOSE_NORMAL);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const ws = this.#ws;
    if (ws.readyState === WebSocket.OPEN) {
      const code = err ? ((err as { closeCode?: number }).closeCode ?? CLOSE_UPSTREAM_ERROR) : CLOSE_NORMAL;
      // A close reason holds at most 123 bytes.
      ws.close(code, Buffer.from(err?.message ?? '').subarray(0, 120).toString());
      setTimeout(() => ws.terminate(), CLOSE_WAIT_MS).unref();
    } else if (ws.readyState === WebSocket.CLOSING) {
      setTimeout(() => ws.terminate(), CLOSE_WAIT_MS).unref(); // ws closed it (e.g. 1009): let its frame out
    } else if (ws.readyState !== WebSocket.CLOSED) {
      ws.terminate();
    }
    callback(err);
  }
}
