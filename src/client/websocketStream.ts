// A byte stream over one `gatehouse-tunnel.v1` WebSocket: binary messages carry bytes, the text
// message {"type":"eof"} is a half-close, close 1000 is normal and 1011 an upstream error.
import { Duplex } from 'node:stream';
import type WebSocket from 'ws';

/** Above this many queued bytes, writes wait (the local socket is paused by pipe's backpressure). */
const HIGH_WATER = 1 << 20;
const LOW_WATER = 256 << 10;
export const EOF_MESSAGE = JSON.stringify({ type: 'eof' });

export class TunnelClosedError extends Error {
  readonly code: number;
  constructor(code: number, reason: string) {
    // The gateway's 1011 reason already reads "upstream error: <code>"; do not say it twice.
    super(code === 1011 ? (reason.startsWith('upstream error') ? reason : `upstream error: ${reason || 'no reason given'}`) : `tunnel closed with code ${code}${reason ? `: ${reason}` : ''}`);
    this.code = code;
  }
}

export class WebSocketStream extends Duplex {
  private readonly ws: WebSocket;
  private sentEof = false;
  private gotEof = false;
  private peerClosed = false;
  private waitingWrite: ((err?: Error | null) => void) | undefined;

  constructor(ws: WebSocket) {
    super({ allowHalfOpen: true, readableHighWaterMark: 1 << 20, writableHighWaterMark: 256 << 10 });
    this.ws = ws;
    ws.on('message', (data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (isBinary) {
        if (this.gotEof) return this.destroy(new Error('protocol error: data after eof'));
        if (!this.push(bytes)) ws.pause();
        return;
      }
      let message: { type?: unknown };
      try {
        message = JSON.parse(bytes.toString('utf8')) as { type?: unknown };
      } catch {
        return this.destroy(new Error('protocol error: text message is not JSON'));
      }
      if (message.type === 'eof' && !this.gotEof) {
        this.gotEof = true;
        this.push(null);
        this.closeWhenDone();
      }
      // Other message types are for later versions of the protocol: ignored.
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (code !== 1000 && code !== 1005) return void this.destroy(new TunnelClosedError(code, reason.toString('utf8')));
      // A normal close: what arrived is delivered in full, then the stream closes. Bytes we still
      // had to send cannot arrive any more; they are dropped, as a socket's peer would drop them.
      this.peerClosed = true;
      this.releaseWrite();
      if (!this.gotEof) {
        this.gotEof = true;
        this.push(null);
      }
      if (this.readableEnded) this.destroy();
      else this.once('end', () => this.destroy());
    });
    ws.on('error', (err: Error) => this.destroy(err));
  }

  override _read(): void {
    if (this.ws.isPaused) this.ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.peerClosed) return callback();
    this.ws.send(chunk, { binary: true }, (err) => {
      if (err) return this.destroy(err);
      this.releaseWrite();
    });
    if (this.ws.bufferedAmount < HIGH_WATER) callback();
    else this.waitingWrite = callback;
  }

  private releaseWrite(): void {
    const waiting = this.waitingWrite;
    if (waiting && (this.peerClosed || this.ws.bufferedAmount <= LOW_WATER)) {
      this.waitingWrite = undefined;
      waiting();
    }
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.peerClosed) return callback();
    this.ws.send(EOF_MESSAGE, { binary: false }, (err) => {
      if (err) return callback(err);
      this.sentEof = true;
      callback();
      this.closeWhenDone();
    });
  }

  private closeWhenDone(): void {
    if (this.sentEof && this.gotEof && this.ws.readyState === this.ws.OPEN) this.ws.close(1000);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const ws = this.ws;
    if (ws.readyState === ws.OPEN) {
      if (err && !(err instanceof TunnelClosedError)) ws.close(1011, err.message.slice(0, 120));
      else ws.close(1000);
    } else if (ws.readyState === ws.CONNECTING) {
      ws.terminate();
    }
    callback(err);
  }
}
