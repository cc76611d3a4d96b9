// Datagrams over a connection to the gateway, for both roles: DATAGRAM capsules on an upgraded HTTP/1.1
// stream (RFC 9298 CONNECT-UDP), or one binary WebSocket message per datagram (subprotocol gatehouse-udp.v1).
import type { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { CapsuleReader, DATAGRAM_CAPSULE, datagramCapsule, udpPayloadOf } from './capsules.ts';

/** The WebSocket transport's subprotocol: each binary message is one UDP payload, nothing else. */
export const UDP_SUBPROTOCOL = 'gatehouse-udp.v1';
/** The HTTP/1.1 upgrade token of RFC 9298. */
export const CONNECT_UDP = 'connect-udp';
/**
 * HTTP/2 receive windows of a CONNECT-UDP stream and of its session, on both sides. The default (64 KiB) makes a
 * flow wait for a WINDOW_UPDATE every 64 datagrams of 1 KiB, and an event-loop pause then costs the sender drops.
 */
export const H2_STREAM_WINDOW_BYTES = 1 << 20;
export const H2_SESSION_WINDOW_BYTES = 8 << 20;
/** The largest UDP payload there is (65,535 - 8 UDP - 20 IPv4 header bytes): anything longer is not a datagram. */
export const MAX_UDP_PAYLOAD = 65_507;
/** A capsule holding the largest payload: its context ID and that payload. A longer capsule is malformed (RFC 9297 §3.3). */
const MAX_CAPSULE_BYTES = MAX_UDP_PAYLOAD + 8;

/** How a channel ended: `error` when the peer broke the protocol or the connection failed, rather than closing it. */
export interface ChannelEnd {
  reason: string;
  error: boolean;
}

/** One end of a flow's datagram transport. */
export interface DatagramChannel {
  /** Queues one datagram to the peer; false when more than the queue's bytes are waiting (the datagram is dropped). */
  send(payload: Buffer): boolean;
  /** Called with each datagram the peer sent (a view: copy it to keep it past the call). */
  onDatagram: (payload: Buffer) => void;
  /** Ends the channel (a clean close, or a reset with `error`). */
  close(reason: string, error?: boolean): void;
  /** Resolves once, when the channel ended from either side. */
  readonly ended: Promise<ChannelEnd>;
}

abstract class ChannelBase implements DatagramChannel {
  onDatagram: (payload: Buffer) => void = () => {};
  readonly ended: Promise<ChannelEnd>;
  #resolve!: (end: ChannelEnd) => void;
  #done = false;

  constructor() {
    this.ended = new Promise((resolve) => (this.#resolve = resolve));
  }

  /** True once the channel ended: nothing more is delivered, whatever the peer still sends. */
  protected get done(): boolean {
    return this.#done;
  }

  protected end(reason: string, error: boolean): boolean {
    if (this.#done) return false;
    this.#done = true;
    this.#resolve({ reason, error });
    return true;
  }

  abstract send(payload: Buffer): boolean;
  abstract close(reason: string, error?: boolean): void;
}

/**
 * How a capsule stream is cut (not closed): `malformed` when the peer broke the capsule protocol. An HTTP/1.1
 * connection is destroyed; an HTTP/2 stream is reset with the code that says which (RFC 9297 §3.3).
 */
export type CutStream = (malformed: boolean) => void;

/**
 * RFC 9298 over any byte stream (an upgraded HTTP/1.1 connection, an HTTP/2 stream): DATAGRAM capsules with
 * context ID 0 carry payloads; other contexts are dropped and other capsule types read past (RFC 9297 §3.2); a
 * malformed capsule ends the flow. `queueBytes` bounds what may wait to be written: UDP drops, it never
 * buffers without bound. A stream that closes without its peer's end (a reset) ends the flow as an error.
 */
export class CapsuleChannel extends ChannelBase {
  readonly #stream: Duplex;
  readonly #queueBytes: number;
  readonly #reader = new CapsuleReader(MAX_CAPSULE_BYTES);
  readonly #cut: CutStream;
  #corked = false;
  readonly #uncork = () => {
    this.#corked = false;
    this.#stream.uncork();
  };

  constructor(stream: Duplex, queueBytes: number, head: Buffer = Buffer.alloc(0), cut: CutStream = () => stream.destroy()) {
    super();
    this.#stream = stream;
    this.#queueBytes = queueBytes;
    this.#cut = cut;
    // Closed before the peer's end: reset (a connection gone), not a clean close. An HTTP/2 stream says
    // 'aborted' when reset (RST_STREAM, its session gone), then ends its readable side ('end') before 'close';
    // a stream destroyed with an error (a publisher session's own words: "publisher lost (ping timeout)") says
    // 'error' instead of 'end', and that names the cause.
    let aborted = false;
    stream.on('data', (chunk: Buffer) => this.#read(chunk));
    stream.on('end', () => (aborted ? this.#fail('connection reset') : this.close('peer closed')));
    // The peer's RST_STREAM is a reset like a connection's; other errors keep their words.
    stream.on('error', (err: NodeJS.ErrnoException) => this.#fail(err.code === 'ERR_HTTP2_STREAM_ERROR' ? 'connection reset' : `connection error: ${err.code ?? err.message}`));
    stream.on('aborted', () => (aborted = true));
    stream.on('close', () => {
      const reset = aborted || !stream.readableEnded;
      this.end(reset ? 'connection reset' : 'peer closed', reset);
    });
    // Bytes that arrived with the request head are the first capsules; read them once the caller has set onDatagram.
    if (head.length > 0) queueMicrotask(() => this.#read(head));
    stream.resume();
  }

  #read(chunk: Buffer): void {
    // A cleanly closed stream stays readable until the peer's FIN: what it sends after our close is not delivered.
    if (this.done) return;
    const read = this.#reader.push(chunk);
    if (!read.ok) return this.#fail(`malformed capsule: ${read.invalid}`, true);
    for (const capsule of read.capsules) {
      if (capsule.type !== DATAGRAM_CAPSULE) continue;
      const datagram = udpPayloadOf(capsule.value);
      if (!datagram.ok) return this.#fail(`malformed capsule: ${datagram.invalid}`, true);
      if (datagram.payload !== undefined && !this.done) this.onDatagram(datagram.payload);
    }
  }

  #fail(reason: string, malformed = false): void {
    if (this.end(reason, true)) this.#cut(malformed);
  }

  /** `written`: called once the connection took the capsule (on an HTTP/2 stream: within its flow-control window), or failed to. */
  send(payload: Buffer, written?: () => void): boolean {
    // writableLength counts what the connection has not yet taken: past the queue's bytes the peer reads too slowly.
    if (this.#stream.writableLength > this.#queueBytes || this.#stream.writableEnded || this.#stream.destroyed) return false;
    // Hot path: the datagrams of one event-loop turn go out as one TLS write (a record and a syscall per
    // datagram cost the sender its receive buffer at a few thousand datagrams per second).
    if (!this.#corked) {
      this.#corked = true;
      this.#stream.cork();
      process.nextTick(this.#uncork);
    }
    this.#stream.write(datagramCapsule(payload), written && (() => written()));
    return true;
  }

  close(reason: string, error = false): void {
    if (!this.end(reason, error)) return;
    if (error) this.#cut(false);
    else this.#stream.end();
  }
}

/** One datagram per binary WebSocket message; a text message breaks the protocol (close 1003). */
export class WebSocketChannel extends ChannelBase {
  readonly #ws: WebSocket;
  readonly #queueBytes: number;

  constructor(ws: WebSocket, queueBytes: number) {
    super();
    this.#ws = ws;
    this.#queueBytes = queueBytes;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.done) return; // messages that crossed our close frame
      if (!isBinary) return this.#fail(1003, 'text message on a UDP flow');
      this.onDatagram(data);
    });
    ws.on('close', (code: number, reason: Buffer) => this.end(code === 1000 || code === 1001 || code === 1005 ? 'peer closed' : `closed with code ${code}${reason.length > 0 ? `: ${reason.toString('utf8').slice(0, 200)}` : ''}`, code !== 1000 && code !== 1001 && code !== 1005));
    ws.on('error', (err: Error) => this.#fail(1002, `websocket error: ${err.message}`));
  }

  #fail(code: number, reason: string): void {
    if (!this.end(reason, true)) return;
    if (this.#ws.readyState === this.#ws.OPEN) this.#ws.close(code, reason.slice(0, 120));
    else this.#ws.terminate();
  }

  send(payload: Buffer): boolean {
    if (this.#ws.readyState !== this.#ws.OPEN || this.#ws.bufferedAmount > this.#queueBytes) return false;
    this.#ws.send(payload, { binary: true });
    return true;
  }

  close(reason: string, error = false): void {
    if (!this.end(reason, error)) return;
    if (this.#ws.readyState === this.#ws.OPEN) this.#ws.close(error ? 1011 : 1000, reason.slice(0, 120));
    else this.#ws.terminate();
  }
}
