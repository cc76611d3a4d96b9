// The WebSocket tunnel protocol (gatehouse-tunnel.v1) as a byte stream: binary messages carry bytes, the
// text message {"type":"eof"} half-closes one direction, other JSON types are ignored; backpressure included.
import { Duplex } from 'node:stream';
import { WebSocket, type RawData } from 'ws';

export const TUNNEL_SUBPROTOCOL = 'gatehouse-tunnel.v1';
export const EOF_MESSAGE = '{"type":"eof"}';
/** The largest binary message a client may send; senders send what they read, typically <= 64 KiB. */
export const MAX_MESSAGE_BYTES = 4 << 20;

/** Writes wait once this much is queued on the WebSocket, and go on when it drops below LOW_WATER. */
const HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;
/** After our close frame, a peer that does not answer is cut off after this long. */
const CLOSE_WAIT_MS = 5_000;

function protocolError(message: string, closeCode: number): Error & { closeCode: number } {
  return Object.assign(new Error(message), { closeCode });
}

/** A text message is a JSON control message: its `type`, or undefined when it is not one. */
function controlType(data: RawData): string | undefined {
  try {
    const parsed: unknown = JSON.parse(asBuffer(data).toString('utf8'));
    const type = typeof parsed === 'object' && parsed !== null ? (parsed as { type?: unknown }).type : undefined;
    return typeof type === 'string' ? type : undefined;
  } catch {
    return undefined;
  }
}

function asBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

/** One tunnel's WebSocket seen as a half-closable byte stream. Destroying it closes the WebSocket. */
export class TunnelMessageStream extends Duplex {
  readonly #ws: WebSocket;
  #eofReceived = false;
  #waitingWrite: ((err?: Error | null) => void) | undefined;

  constructor(ws: WebSocket) {
    super({ allowHalfOpen: true });
    this.#ws = ws;
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('error', (err) => this.destroy(err));
    // The peer closed the WebSocket: this stream is over, whether or not it sent eof first.
    ws.on('close', () => {
      this.#releaseWrite(new Error('websocket closed'));
      if (!this.destroyed) this.destroy();
    });
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.destroyed) return;
    if (!isBinary) {
      const type = controlType(data);
      if (type === undefined) return void this.destroy(protocolError('protocol error: text message is not a control message', 1002));
      if (type !== 'eof') return; // other control messages belong to later versions of the protocol
      if (!this.#eofReceived) {
        this.#eofReceived = true;
        this.push(null);
      }
      return;
    }
    if (this.#eofReceived) return void this.destroy(protocolError('protocol error: data after eof', 1002));
    if (!this.push(asBuffer(data))) this.#ws.pause();
  }

  override _read(): void {
    this.#ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return callback(new Error('websocket is not open'));
    this.#ws.send(chunk, { binary: true }, (err) => this.#releaseWrite(err ?? undefined));
    if (this.#ws.bufferedAmount <= HIGH_WATER) callback();
    else this.#waitingWrite = callback;
  }

  /** A send completed: let a held write go on once the queue is short again (or at once on error). */
  #releaseWrite(err?: Error): void {
    const waiting = this.#waitingWrite;
    if (!waiting || (!err && this.#ws.bufferedAmount > LOW_WATER)) return;
    this.#waitingWrite = undefined;
    waiting(err);
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return callback(new Error('websocket is not open'));
    this.#ws.send(EOF_MESSAGE, (err) => callback(err ?? null));
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const ws = this.#ws;
    if (ws.readyState === WebSocket.OPEN) {
      const code = err ? ((err as { closeCode?: number }).closeCode ?? 1011) : 1000;
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
