// Carries bytes both ways between a client stream and an upstream stream, for every tunnel kind:
// half-close each way, backpressure (a full writer pauses its reader), idle timeout, byte counts, who closed.
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { resetConnection } from './resetConnection.ts';
import type { SharedReads } from './sharedReads.ts';

export type Side = 'client' | 'upstream';

export interface SpliceEnds {
  client: Duplex;
  upstream: Duplex;
  /** Client bytes that arrived with the request headers: they go to the upstream first. */
  clientHead?: Buffer;
  /** Upstream bytes that arrived with its response headers: they go to the client first. */
  upstreamHead?: Buffer;
  /** Close after this long without a byte in either direction; 0 = never. */
  idleTimeoutMs: number;
  /**
   * The upstream socket reads into the shared buffer (opened with its `onread`): its bytes come from
   * there instead of 'data' events. Only for a client that consumes a write at once when nothing is
   * queued on it (a TLS socket encrypts on write); anything else would keep a view that gets overwritten.
   */
  upstreamReads?: SharedReads;
  /** Sees every chunk carried (e.g. to spot a WebSocket close frame); must not keep it. */
  inspect?: (from: Side, chunk: Buffer) => void;
  /** Who ended the conversation when the protocol inside says so better than the byte stream does. */
  closedBy?: () => Side | undefined;
  /**
   * Stopped from outside with a close code (shutdown: 1001, revocation: 1008): the protocol inside's own
   * last words to the client (a WebSocket close frame), when it is at a point where they can be said; else the client is cut.
   */
  farewell?: (reason: string, closeCode: number) => Buffer | undefined;
}

export interface SpliceResult {
  /** Bytes from client to upstream. */
  bytesIn: number;
  /** Bytes from upstream to client. */
  bytesOut: number;
  /** Who closed: 'client closed', 'upstream closed', 'idle timeout', 'upstream error: ...', ... */
  reason: string;
}

export interface Splice {
  readonly done: Promise<SpliceResult>;
  /** Ends the splice now (idle timeout, shutdown); `reason` becomes the result's reason. */
  stop(reason: string, closeCode?: number): void;
}

/** An error that also says which WebSocket close code a message-framed stream should send. */
export function stopError(message: string, closeCode: number): Error & { closeCode: number } {
  return Object.assign(new Error(message), { closeCode });
}

/** After one side has closed, the other gets this long to flush what it was given. */
const LINGER_MS = 30_000;
/** A client told the conversation is over (a close frame) gets this long to read it before it is cut. */
const FAREWELL_MS = 2_000;

// Only what the closures below use is kept for the tunnel's lifetime: not `ends` itself, whose heads are
// views that would hold the whole read they came in (the CONNECT request's) for as long as the tunnel lives.
export function splice({ client, upstream, clientHead, upstreamHead, idleTimeoutMs, upstreamReads, inspect, closedBy, farewell }: SpliceEnds): Splice {
  const streams: Record<Side, Duplex> = { client, upstream };
  const other = (side: Side): Side => (side === 'client' ? 'upstream' : 'client');
  const bytes = { client: 0, upstream: 0 }; // bytes read from each side (and handed to the other)
  const ended = { client: false, upstream: false };
  const closed = { client: false, upstream: false };
  let firstEnd: Side | undefined;
  let fault: string | undefined;
  /** The client was sent its last words: it is ended with them, not cut. */
  let farewellSaid = false;
  let lastActivity = performance.now();
  let idleTimer: NodeJS.Timeout | undefined;
  let lingerTimer: NodeJS.Timeout | undefined;
  let settle!: (result: SpliceResult) => void;
  const done = new Promise<SpliceResult>((resolve) => (settle = resolve));

  // Per direction, built once: the chunk path allocates nothing but what the streams themselves do.
  const resumeClient = (): void => void client.resume();
  const resumeUpstream = (): void => void upstream.resume();

  /** Carries one chunk; false when the reader should pause (its sink is full or gone). */
  const deliver = (from: Side, chunk: Buffer): boolean => {
    const toUpstream = from === 'client';
    const source = toUpstream ? client : upstream;
    const sink = toUpstream ? upstream : client;
    if (sink.destroyed || sink.writableEnded) return true; // the other side is gone: nothing is carried
    bytes[from] += chunk.length;
    lastActivity = performance.now();
    inspect?.(from, chunk);
    if (sink.write(chunk) || source.isPaused()) return true;
    source.pause();
    sink.once('drain', toUpstream ? resumeClient : resumeUpstream);
    return false;
  };

  /**
   * A read of the upstream in the shared buffer. The client consumes it at once (TLS encrypts it on
   * write) unless earlier writes still wait in its queue, or it is corked: then the view would sit there
   * by reference and be overwritten by the next read of any tunnel, so it is copied first.
   */
  // Only a TLS client consumes the bytes during write() (OpenSSL encrypts them at once); any other stream
  // may keep the view queued by reference, so it always gets a copy.
  const consumesOnWrite = client instanceof TLSSocket;
  const deliverSharedRead = (view: Buffer): boolean =>
    deliver('upstream', consumesOnWrite && client.writableLength === 0 && client.writableCorked === 0 ? view : Buffer.from(view));

  /**
   * The upstream's stream was cut short: the client must see an error, not an end. A TCP client gets a
   * reset (a FIN would read as a complete transfer); a message-framed client gets `err`'s close code.
   */
  const cutClient = (err?: Error): void => {
    if (client.destroyed || farewellSaid) return;
    if (client instanceof TLSSocket) resetConnection(client);
    else client.destroy(err);
  };

  const stop = (reason: string, closeCode = 1000): void => {
    fault ??= reason;
    // Never a normal close (1000): that would read as a complete conversation.
    const last = closeCode !== 1000 && !client.destroyed && !client.writableEnded ? farewell?.(reason, closeCode) : undefined;
    if (last) {
      farewellSaid = true;
      client.end(last);
      const cut = setTimeout(() => client.destroy(), FAREWELL_MS);
      cut.unref();
      client.once('close', () => clearTimeout(cut));
    }
    // Stopped from outside (shutdown, idle timeout, revocation): the client's transfer was cut, so it sees an error too.
    cutClient(stopError(reason, closeCode));
    if (!upstream.destroyed) upstream.destroy(stopError(reason, closeCode));
  };

  const finishIfDone = (): void => {
    if (!closed.client || !closed.upstream) return;
    clearTimeout(idleTimer);
    clearTimeout(lingerTimer);
    const reason = fault ?? `${closedBy?.() ?? firstEnd ?? 'client'} closed`;
    settle({ bytesIn: bytes.client, bytesOut: bytes.upstream, reason });
  };

  const watch = (side: Side): void => {
    const stream = streams[side];
    const peer = streams[other(side)];
    stream.on('data', (chunk: Buffer) => void deliver(side, chunk));
    stream.on('end', () => {
      ended[side] = true;
      firstEnd ??= side;
      // Half-close: this side has finished writing, so finish the other side's write direction.
      if (!peer.destroyed) peer.end();
    });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      fault ??= `${side} error: ${err.code ?? err.message}`;
      if (side === 'upstream') cutClient(stopError(fault, 1011));
      else if (!peer.destroyed) peer.destroy();
    });
    stream.on('close', () => {
      closed[side] = true;
      if (closed[other(side)]) {
        // The other side went first and already settled this side's fate.
      } else if (!ended[side]) {
        // Gone without finishing its stream (reset, destroyed, WebSocket closed early): drop the other side.
        fault ??= `${side} closed`;
        if (side === 'upstream') cutClient();
        else if (!peer.destroyed) peer.destroy();
      } else if (!peer.destroyed) {
        // It finished and left: let the other side flush what it was given, then close it.
        peer.end();
        if (peer.writableFinished) peer.destroy();
        else peer.once('finish', () => peer.destroy());
        lingerTimer = setTimeout(() => peer.destroy(), LINGER_MS);
        lingerTimer.unref();
      }
      finishIfDone();
    });
  };

  watch('client');
  watch('upstream');
  upstreamReads?.attach(deliverSharedRead);
  if (clientHead?.length) deliver('client', clientHead);
  if (upstreamHead?.length) deliver('upstream', upstreamHead);

  if (idleTimeoutMs > 0) {
    const check = (): void => {
      const idle = performance.now() - lastActivity;
      if (idle >= idleTimeoutMs) return stop('idle timeout');
      idleTimer = setTimeout(check, idleTimeoutMs - idle);
      idleTimer.unref();
    };
    idleTimer = setTimeout(check, idleTimeoutMs);
    idleTimer.unref();
  }
  return { done, stop };
}
