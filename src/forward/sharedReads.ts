// Reads of an upstream socket into one buffer shared by every tunnel (net `onread`) instead of a fresh
// Buffer per read: each read is handed on at once and must be consumed or copied before the next one.
import type { OnReadOpts } from 'node:net';

/** 64 KiB: what libuv reads at most per call anyway. One for the whole process: reads never overlap. */
const SHARED_READ_BYTES = 64 << 10;
let sharedBuffer: Buffer | undefined;

/**
 * One upstream socket's reads. `onread` goes to `net.connect`; `attach` names who takes the bytes. The
 * chunk handed to the taker is a view of the shared buffer, valid only until it returns: a taker that
 * keeps it (a queued write) must copy it. Returning false pauses the socket.
 */
export interface SharedReads {
  readonly onread: OnReadOpts;
  attach(take: (chunk: Buffer) => boolean): void;
}

export function sharedReads(): SharedReads {
  const buffer = (sharedBuffer ??= Buffer.allocUnsafe(SHARED_READ_BYTES));
  // Reads that arrive before anyone takes them (the upstream spoke first): copied, and the socket paused
  // until `attach`, so nothing unbounded is held.
  let early: Buffer[] | undefined;
  let take: ((chunk: Buffer) => boolean) | undefined;
  return {
    onread: {
      buffer,
      callback: (bytes) => {
        const chunk = buffer.subarray(0, bytes);
        if (take) return take(chunk);
        (early ??= []).push(Buffer.from(chunk));
        return false;
      },
    },
    attach(taker) {
      take = taker;
      for (const chunk of early ?? []) taker(chunk);
      early = undefined;
    },
  };
}
