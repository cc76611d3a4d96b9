// The one byte carrier: every splice (gateway tunnels, the client's -L and --stdio, the publisher's streams)
// carries bytes both ways with this half-close and backpressure rule; where a side differs, it is an option.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { resetConnection } from './resetConnection.ts';

/** 'client': the end that asked for the conversation; 'upstream': the end toward the service. */
export type Side = 'client' | 'upstream';

/**
 * Reads of one side into reused memory instead of 'data' events (the gateway's shared upstream buffer,
 * the client's tunnel slabs). A chunk given with `release` stays valid until release() (called once the
 * write of it is done); one given without it is valid only until `take` returns (copied if kept).
 */
export interface ReadSource {
  attach(take: (chunk: Buffer, release?: () => void) => boolean): unknown;
}

/** Ends one side because the transfer it was part of was cut short (see `cutShort`). */
export type Cut = (stream: Duplex, err?: Error) => void;

export interface CarryEnds {
  client: Duplex;
  upstream: Duplex;
  /** Client bytes that arrived with the request headers: they go to the upstream first. */
  clientHead?: Buffer;
  /** Upstream bytes that arrived with its response headers: they go to the client first. */
  upstreamHead?: Buffer;
  /** Close after this long without a byte in either direction; 0 (default) = never. */
  idleTimeoutMs?: number;
  /** The upstream's bytes come from here instead of 'data' events (see ReadSource). */
  upstreamReads?: ReadSource;
  /**
   * Writes of `upstreamReads` chunks to the client are corked until the event loop's next turn, so the
   * TLS records decrypted from one socket read (16 KiB each) leave in one writev instead of one each.
   */
  corkReads?: boolean;
  /** Sees every chunk carried (e.g. to spot a WebSocket close frame); must not keep it. */
  inspect?: (from: Side, chunk: Buffer) => void;
  /** Who ended the conversation when the protocol inside says so better than the byte stream does. */
  closedBy?: () => Side | undefined;
  /**
   * Stopped from outside with a close code (shutdown: 1001, revocation: 1008): the protocol inside's own
   * last words to the client (a WebSocket close frame), when it is at a point where they can be said; else the client is cut.
   */
  farewell?: (reason: string, closeCode: number) => Buffer | undefined;
  /** How each side is cut when the other side's stream was cut short; default `cutShort`. */
  cut?: Partial<Record<Side, Cut>>;
  /**
   * What an error on one side does to the other. 'cut' (default, the gateway): the other side is cut at
   * once, even if the failed side had finished sending, since what the other side sent it may not have
   * arrived (the audit and the client say so). 'as-close' (the client): the other side is treated as when
   * the failed side closes: flushed and closed if the failed side had finished sending, cut otherwise.
   */
  onError?: 'cut' | 'as-close';
  /**
   * Whether a side that ended its stream also closed cleanly; default yes. An HTTP/2 stream reset with an
   * error code after its END_STREAM was still cut: the other side is then cut too, not flushed.
   */
  cleanClose?: Partial<Record<Side, () => boolean>>;
  /**
   * After one side finished and left, the other gets this long to flush what it was given, then it is
   * destroyed; default 30 s (a gateway holds nothing for a reader that stopped). 0: wait for as long as it takes.
   */
  lingerMs?: number;
}

export interface CarryResult {
  /** Bytes from client to upstream. */
  bytesIn: number;
  /** Bytes from upstream to client. */
  bytesOut: number;
  /** Who closed: 'client closed', 'upstream closed', 'idle timeout', 'upstream error: ...', ... */
  reason: string;
  /** The first error either side reported, if any. */
  error?: { side: Side; error: Error };
}

export interface Carry {
  readonly done: Promise<CarryResult>;
  /** Ends the carrying now (idle timeout, shutdown); `reason` becomes the result's reason. */
  stop(reason: string, closeCode?: number): void;
}

/** An error that also says which WebSocket close code a message-framed stream should send. */
export function stopError(message: string, closeCode: number): Error & { closeCode: number } {
  return Object.assign(new Error(message), { closeCode });
}

/**
 * The default cut: a socket gets a TCP reset (a FIN would read as a complete transfer; a UNIX socket is
 * only destroyed), a message-framed stream is destroyed with `err`, whose close code it sends.
 */
export const cutShort: Cut = (stream, err) => {
  if (stream.destroyed) return;
  if (stream instanceof Socket) resetConnection(stream);
  else stream.destroy(err);
};

const DEFAULT_LINGER_MS = 30_000;
/** A client told the conversation is over (a close frame) gets this long to read it before it is cut. */
const FAREWELL_MS = 2_000;

// Only what the closures below use is kept for the carrier's lifetime: not `ends` itself, whose heads are
// views that would hold the whole read they came in (the CONNECT request's) for as long as the tunnel lives.
export function carryBytes({ client, upstream, clientHead, upstreamHead, idleTimeoutMs = 0, upstreamReads, corkReads, inspect, closedBy, farewell, cut = {}, onError = 'cut', cleanClose = {}, lingerMs = DEFAULT_LINGER_MS }: CarryEnds): Carry {
  const streams: Record<Side, Duplex> = { client, upstream };
  /** The client was sent its last words: it is ended with them, not cut. */
  let farewellSaid = false;
  const cutClient = cut.client ?? cutShort;
  const cuts: Record<Side, Cut> = { client: (stream, err) => (farewellSaid ? undefined : cutClient(stream, err)), upstream: cut.upstream ?? cutShort };
  const other = (side: Side): Side => (side === 'client' ? 'upstream' : 'client');
  const bytes = { client: 0, upstream: 0 }; // bytes read from each side (and handed to the other)
  const ended = { client: false, upstream: false };
  const closed = { client: false, upstream: false };
  let firstEnd: Side | undefined;
  let fault: string | undefined;
  let firstError: CarryResult['error'];
  let lastActivity = performance.now();
  let idleTimer: NodeJS.Timeout | undefined;
  let lingerTimer: NodeJS.Timeout | undefined;
  let settle!: (result: CarryResult) => void;
  const done = new Promise<CarryResult>((resolve) => (settle = resolve));

  // Per direction, built once: the chunk path allocates nothing but what the streams themselves do.
  const resumeClient = (): void => void client.resume();
  const resumeUpstream = (): void => void upstream.resume();

  /** Carries one chunk; false when the reader should pause (its sink is full or gone). */
  const deliver = (from: Side, chunk: Buffer, release?: () => void): boolean => {
    const toUpstream = from === 'client';
    const source = toUpstream ? client : upstream;
    const sink = toUpstream ? upstream : client;
    if (sink.destroyed || sink.writableEnded) {
      release?.();
      return true; // the other side is gone: nothing is carried
    }
    bytes[from] += chunk.length;
    lastActivity = performance.now();
    inspect?.(from, chunk);
    if (sink.write(chunk, release) || source.isPaused()) return true;
    source.pause();
    sink.once('drain', toUpstream ? resumeClient : resumeUpstream);
    return false;
  };

  // A chunk without `release` is a view of a buffer read into again after this returns. Only a TLS client
  // consumes the bytes during write() (OpenSSL encrypts them at once) when nothing waits in its queue and it
  // is not corked; any other stream may keep the view queued by reference, so it gets a copy.
  const consumesOnWrite = client instanceof TLSSocket;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    client.uncork();
  };
  const takeRead = (view: Buffer, release?: () => void): boolean => {
    if (corkReads && !corked && !client.destroyed) {
      corked = true;
      client.cork();
      setImmediate(uncork);
    }
    if (release) return deliver('upstream', view, release);
    return deliver('upstream', consumesOnWrite && client.writableLength === 0 && client.writableCorked === 0 ? view : Buffer.from(view));
  };

  const stop = (reason: string, closeCode = 1000): void => {
    fault ??= reason;
    // Never a normal close (1000): that would read as a complete conversation.
    const last = closeCode !== 1000 && !client.destroyed && !client.writableEnded ? farewell?.(reason, closeCode) : undefined;
    if (last) {
      farewellSaid = true;
      client.end(last);
      const cutLater = setTimeout(() => client.destroy(), FAREWELL_MS);
      cutLater.unref();
      client.once('close', () => clearTimeout(cutLater));
    }
    // Stopped from outside (shutdown, idle timeout, revocation): the client's transfer was cut, so it sees an error too.
    cuts.client(client, stopError(reason, closeCode));
    cuts.upstream(upstream, stopError(reason, closeCode));
  };

  const finishIfDone = (): void => {
    if (!closed.client || !closed.upstream) return;
    clearTimeout(idleTimer);
    clearTimeout(lingerTimer);
    const reason = fault ?? `${closedBy?.() ?? firstEnd ?? 'client'} closed`;
    settle({ bytesIn: bytes.client, bytesOut: bytes.upstream, reason, ...(firstError && { error: firstError }) });
  };

  /**
   * Whether `side`'s end of stream was a clean one. An HTTP/2 stream reset by its peer also ends its
   * readable side: Node emits 'aborted' (and sets `rstCode`) and may still emit 'end', so a reset must be
   * told from END_STREAM here, before the end is passed on as a clean half-close.
   */
  const endedClean = (side: Side): boolean => {
    const { rstCode, aborted } = streams[side] as { rstCode?: unknown; aborted?: unknown };
    return cleanClose[side]?.() !== false && aborted !== true && !(typeof rstCode === 'number' && rstCode !== 0);
  };

  /**
   * `side` is finished (closed, or failed with onError 'as-close'). If it finished its stream, the other
   * side flushes what it was given, then closes (half-close done); if not, the other side is cut.
   */
  const closeOther = (side: Side): void => {
    const peer = streams[other(side)];
    if (!ended[side] || !endedClean(side)) {
      // Gone without finishing its stream (reset, destroyed, WebSocket closed early): cut the other side.
      fault ??= `${side} closed`;
      return cuts[other(side)](peer);
    }
    if (peer.destroyed) return;
    peer.end();
    if (peer.writableFinished) peer.destroy();
    else peer.once('finish', () => peer.destroy());
    if (lingerMs > 0) {
      lingerTimer = setTimeout(() => peer.destroy(), lingerMs);
      lingerTimer.unref();
    }
  };

  const watch = (side: Side): void => {
    const stream = streams[side];
    const peer = streams[other(side)];
    stream.on('data', (chunk: Buffer) => void deliver(side, chunk));
    // As pipe() does: a stream paused before (a socket accepted with pauseOnConnect) flows from now on.
    stream.resume();
    stream.on('end', () => {
      ended[side] = true;
      firstEnd ??= side;
      if (!endedClean(side)) {
        // Reset, not finished: the other side must see a cut, never a clean end of what it was sent.
        fault ??= `${side} reset`;
        return cuts[other(side)](peer, stopError(fault, 1011));
      }
      // Half-close: this side has finished writing, so finish the other side's write direction.
      if (!peer.destroyed) peer.end();
    });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      firstError ??= { side, error: err };
      fault ??= `${side} error: ${err.code ?? err.message}`;
      if (onError === 'as-close') closeOther(side);
      else if (side === 'upstream') cuts.client(client, stopError(fault, 1011));
      else cuts.upstream(upstream);
    });
    stream.on('close', () => {
      closed[side] = true;
      // Unless the other side went first and already settled this side's fate.
      if (!closed[other(side)]) closeOther(side);
      finishIfDone();
    });
  };

  watch('client');
  watch('upstream');
  upstreamReads?.attach(takeRead);
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
