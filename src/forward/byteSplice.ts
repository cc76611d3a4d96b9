// Carries bytes both ways between a client stream and an upstream stream, for every tunnel kind:
// half-close each way, backpressure (a full writer pauses its reader), idle timeout, byte counts, who closed.
import type { Duplex } from 'node:stream';

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
  /** Sees every chunk carried (e.g. to spot a WebSocket close frame). */
  inspect?: (from: Side, chunk: Buffer) => void;
  /** Who ended the conversation when the protocol inside says so better than the byte stream does. */
  closedBy?: () => Side | undefined;
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

export function splice(ends: SpliceEnds): Splice {
  const { client, upstream } = ends;
  const streams: Record<Side, Duplex> = { client, upstream };
  const other = (side: Side): Side => (side === 'client' ? 'upstream' : 'client');
  const bytes = { client: 0, upstream: 0 }; // bytes read from each side (and handed to the other)
  const ended = { client: false, upstream: false };
  const closed = { client: false, upstream: false };
  let firstEnd: Side | undefined;
  let fault: string | undefined;
  let lastActivity = performance.now();
  let idleTimer: NodeJS.Timeout | undefined;
  let lingerTimer: NodeJS.Timeout | undefined;
  let settle!: (result: SpliceResult) => void;
  const done = new Promise<SpliceResult>((resolve) => (settle = resolve));

  const deliver = (from: Side, chunk: Buffer): void => {
    const source = streams[from];
    const sink = streams[other(from)];
    if (sink.destroyed || sink.writableEnded) return; // the other side is gone: nothing is carried
    bytes[from] += chunk.length;
    lastActivity = performance.now();
    ends.inspect?.(from, chunk);
    if (!sink.write(chunk) && !source.isPaused()) {
      source.pause();
      sink.once('drain', () => source.resume());
    }
  };

  const stop = (reason: string, closeCode = 1000): void => {
    fault ??= reason;
    for (const side of ['client', 'upstream'] as const) {
      if (!streams[side].destroyed) streams[side].destroy(stopError(reason, closeCode));
    }
  };

  const finishIfDone = (): void => {
    if (!closed.client || !closed.upstream) return;
    clearTimeout(idleTimer);
    clearTimeout(lingerTimer);
    const reason = fault ?? `${ends.closedBy?.() ?? firstEnd ?? 'client'} closed`;
    settle({ bytesIn: bytes.client, bytesOut: bytes.upstream, reason });
  };

  const watch = (side: Side): void => {
    const stream = streams[side];
    const peer = streams[other(side)];
    stream.on('data', (chunk: Buffer) => deliver(side, chunk));
    stream.on('end', () => {
      ended[side] = true;
      firstEnd ??= side;
      // Half-close: this side has finished writing, so finish the other side's write direction.
      if (!peer.destroyed) peer.end();
    });
    stream.on('error', (err: NodeJS.ErrnoException) => {
      fault ??= `${side} error: ${err.code ?? err.message}`;
      if (!peer.destroyed) peer.destroy(side === 'upstream' ? stopError(fault, 1011) : undefined);
    });
    stream.on('close', () => {
      closed[side] = true;
      if (closed[other(side)]) {
        // The other side went first and already settled this side's fate.
      } else if (!ended[side]) {
        // Gone without finishing its stream (reset, destroyed, WebSocket closed early): drop the other side.
        fault ??= `${side} closed`;
        if (!peer.destroyed) peer.destroy();
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
  if (ends.clientHead?.length) deliver('client', ends.clientHead);
  if (ends.upstreamHead?.length) deliver('upstream', ends.upstreamHead);

  if (ends.idleTimeoutMs > 0) {
    const check = (): void => {
      const idle = performance.now() - lastActivity;
      if (idle >= ends.idleTimeoutMs) return stop('idle timeout');
      idleTimer = setTimeout(check, ends.idleTimeoutMs - idle);
      idleTimer.unref();
    };
    idleTimer = setTimeout(check, ends.idleTimeoutMs);
    idleTimer.unref();
  }
  return { done, stop };
}
