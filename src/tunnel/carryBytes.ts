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

/**
 * One carrier's state, shared by the functions below instead of closed over, so each stays short and the
 * chunk path is plain calls on one object. It keeps only what they use: not `ends` itself, whose heads are
 * views that would hold the whole read they came in (the CONNECT request's) for as long as the tunnel lives.
 */
interface Carrier extends Pick<CarryEnds, 'inspect' | 'closedBy' | 'farewell'>, Required<Pick<CarryEnds, 'cleanClose' | 'onError' | 'lingerMs'>> {
  readonly streams: Record<Side, Duplex>;
  readonly cuts: Record<Side, Cut>;
  /** Resumes each side once the other drained (built once: the chunk path allocates nothing of its own). */
  readonly resume: Record<Side, () => void>;
  readonly bytes: Record<Side, number>; // bytes read from each side (and handed to the other)
  readonly ended: Record<Side, boolean>;
  readonly closed: Record<Side, boolean>;
  readonly settle: (result: CarryResult) => void;
  /** The client was sent its last words: it is ended with them, not cut. */
  farewellSaid: boolean;
  firstEnd?: Side;
  fault?: string;
  firstError?: CarryResult['error'];
  lastActivity: number;
  idleTimer?: NodeJS.Timeout;
  lingerTimer?: NodeJS.Timeout;
}

const other = (side: Side): Side => (side === 'client' ? 'upstream' : 'client');

/** Carries one chunk; false when the reader should pause (its sink is full or gone). */
function deliver(c: Carrier, from: Side, chunk: Buffer, release?: () => void): boolean {
  const toUpstream = from === 'client';
  const source = toUpstream ? c.streams.client : c.streams.upstream;
  const sink = toUpstream ? c.streams.upstream : c.streams.client;
  if (sink.destroyed || sink.writableEnded) {
    release?.();
    return true; // the other side is gone: nothing is carried
  }
  c.bytes[from] += chunk.length;
  c.lastActivity = performance.now();
  c.inspect?.(from, chunk);
  if (sink.write(chunk, release) || source.isPaused()) return true;
  source.pause();
  sink.once('drain', c.resume[from]);
  return false;
}

/** What takes the chunks of `upstreamReads`: corks the client for a turn (corkReads), copies a view it cannot lend. */
function readTaker(c: Carrier, corkReads: boolean | undefined): (view: Buffer, release?: () => void) => boolean {
  const client = c.streams.client;
  // A chunk without `release` is a view of a buffer read into again after this returns. Only a TLS client
  // consumes the bytes during write() (OpenSSL encrypts them at once) when nothing waits in its queue and it
  // is not corked; any other stream may keep the view queued by reference, so it gets a copy.
  const consumesOnWrite = client instanceof TLSSocket;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    client.uncork();
  };
  return (view, release) => {
    if (corkReads && !corked && !client.destroyed) {
      corked = true;
      client.cork();
      setImmediate(uncork);
    }
    if (release) return deliver(c, 'upstream', view, release);
    return deliver(c, 'upstream', consumesOnWrite && client.writableLength === 0 && client.writableCorked === 0 ? view : Buffer.from(view));
  };
}

/** Ends the carrying from outside (shutdown, idle timeout, revocation): the client says its last words if it can. */
function stop(c: Carrier, reason: string, closeCode = 1000): void {
  const { client, upstream } = c.streams;
  c.fault ??= reason;
  // Never a normal close (1000): that would read as a complete conversation.
  const last = closeCode !== 1000 && !client.destroyed && !client.writableEnded ? c.farewell?.(reason, closeCode) : undefined;
  if (last) {
    c.farewellSaid = true;
    client.end(last);
    const cutLater = setTimeout(() => client.destroy(), FAREWELL_MS);
    cutLater.unref();
    client.once('close', () => clearTimeout(cutLater));
  }
  // The client's transfer was cut, so it sees an error too.
  c.cuts.client(client, stopError(reason, closeCode));
  c.cuts.upstream(upstream, stopError(reason, closeCode));
}

function finishIfDone(c: Carrier): void {
  if (!c.closed.client || !c.closed.upstream) return;
  clearTimeout(c.idleTimer);
  clearTimeout(c.lingerTimer);
  const reason = c.fault ?? `${c.closedBy?.() ?? c.firstEnd ?? 'client'} closed`;
  c.settle({ bytesIn: c.bytes.client, bytesOut: c.bytes.upstream, reason, ...(c.firstError && { error: c.firstError }) });
}

/**
 * Whether `side`'s end of stream was a clean one. An HTTP/2 stream reset by its peer also ends its
 * readable side: Node emits 'aborted' (and sets `rstCode`) and may still emit 'end', so a reset must be
 * told from END_STREAM here, before the end is passed on as a clean half-close.
 */
function endedClean(c: Carrier, side: Side): boolean {
  const { rstCode, aborted } = c.streams[side] as { rstCode?: unknown; aborted?: unknown };
  return c.cleanClose[side]?.() !== false && aborted !== true && !(typeof rstCode === 'number' && rstCode !== 0);
}

/**
 * `side` is finished (closed, or failed with onError 'as-close'). If it finished its stream, the other
 * side flushes what it was given, then closes (half-close done); if not, the other side is cut.
 */
function closeOther(c: Carrier, side: Side): void {
  const peer = c.streams[other(side)];
  if (!c.ended[side] || !endedClean(c, side)) {
    // Gone without finishing its stream (reset, destroyed, WebSocket closed early): cut the other side.
    c.fault ??= `${side} closed`;
    return c.cuts[other(side)](peer);
  }
  if (peer.destroyed) return;
  peer.end();
  if (peer.writableFinished) peer.destroy();
  else peer.once('finish', () => peer.destroy());
  if (c.lingerMs > 0) {
    c.lingerTimer = setTimeout(() => peer.destroy(), c.lingerMs);
    c.lingerTimer.unref();
  }
}

/** `side` finished its stream: a clean end is passed on as a half-close, a reset as a cut. */
function onEnd(c: Carrier, side: Side): void {
  const peer = c.streams[other(side)];
  c.ended[side] = true;
  c.firstEnd ??= side;
  if (!endedClean(c, side)) {
    // Reset, not finished: the other side must see a cut, never a clean end of what it was sent.
    c.fault ??= `${side} reset`;
    return c.cuts[other(side)](peer, stopError(c.fault, 1011));
  }
  // Half-close: this side has finished writing, so finish the other side's write direction.
  if (!peer.destroyed) peer.end();
}

function onError(c: Carrier, side: Side, err: NodeJS.ErrnoException): void {
  c.firstError ??= { side, error: err };
  c.fault ??= `${side} error: ${err.code ?? err.message}`;
  if (c.onError === 'as-close') closeOther(c, side);
  else if (side === 'upstream') c.cuts.client(c.streams.client, stopError(c.fault, 1011));
  else c.cuts.upstream(c.streams.upstream);
}

function watch(c: Carrier, side: Side): void {
  const stream = c.streams[side];
  stream.on('data', (chunk: Buffer) => void deliver(c, side, chunk));
  // As pipe() does: a stream paused before (a socket accepted with pauseOnConnect) flows from now on.
  stream.resume();
  stream.on('end', () => onEnd(c, side));
  stream.on('error', (err: NodeJS.ErrnoException) => onError(c, side, err));
  stream.on('close', () => {
    c.closed[side] = true;
    // Unless the other side went first and already settled this side's fate.
    if (!c.closed[other(side)]) closeOther(c, side);
    finishIfDone(c);
  });
}

/** Stops the carrying after `idleTimeoutMs` without a byte either way; one timer, re-armed for what is left. */
function watchIdle(c: Carrier, idleTimeoutMs: number): void {
  const check = (): void => {
    const idle = performance.now() - c.lastActivity;
    if (idle >= idleTimeoutMs) return stop(c, 'idle timeout');
    c.idleTimer = setTimeout(check, idleTimeoutMs - idle);
    c.idleTimer.unref();
  };
  c.idleTimer = setTimeout(check, idleTimeoutMs);
  c.idleTimer.unref();
}

export function carryBytes({ client, upstream, clientHead, upstreamHead, idleTimeoutMs = 0, upstreamReads, corkReads, inspect, closedBy, farewell, cut = {}, onError = 'cut', cleanClose = {}, lingerMs = DEFAULT_LINGER_MS }: CarryEnds): Carry {
  const cutClient = cut.client ?? cutShort;
  let settle!: (result: CarryResult) => void;
  const done = new Promise<CarryResult>((resolve) => (settle = resolve));
  const c: Carrier = {
    streams: { client, upstream },
    cuts: { client: (stream, err) => (c.farewellSaid ? undefined : cutClient(stream, err)), upstream: cut.upstream ?? cutShort },
    resume: { client: () => void client.resume(), upstream: () => void upstream.resume() },
    bytes: { client: 0, upstream: 0 },
    ended: { client: false, upstream: false },
    closed: { client: false, upstream: false },
    inspect, closedBy, farewell, cleanClose, onError, lingerMs, settle,
    farewellSaid: false,
    lastActivity: performance.now(),
  };
  watch(c, 'client');
  watch(c, 'upstream');
  upstreamReads?.attach(readTaker(c, corkReads));
  if (clientHead?.length) deliver(c, 'client', clientHead);
  if (upstreamHead?.length) deliver(c, 'upstream', upstreamHead);
  if (idleTimeoutMs > 0) watchIdle(c, idleTimeoutMs);
  return { done, stop: (reason, closeCode) => stop(c, reason, closeCode) };
}
