// Reads of a tunnel's TLS socket into reused memory (the socket's `onread` option) instead of one fresh
// Buffer per TLS record: a bulk transfer then allocates nothing per read, which is most of the client's GC.

/** Memory of one slab: read into front to back, reused once every chunk lent out of it is released. */
interface Slab {
  memory: Buffer;
  used: number;
  lent: number;
}

/** A TLS record carries at most 16 KiB: a slab with less room left than that is retired. */
const MIN_READ = 16 * 1024;
const SLAB_SIZE = 64 * 1024;
/** Released slabs kept for reuse; more are dropped for the GC (a burst that outran the writer). */
const SPARE_SLABS = 2;

/**
 * What read bytes are handed to. Return false to pause the socket until it is resumed; the records
 * already decrypted still arrive after that, so a sink takes every chunk it is given.
 */
export type ChunkSink = (chunk: Buffer, release: () => void) => boolean;

/**
 * The `onread` option of one socket, and where its bytes go (`sink`, replaceable: the response-head
 * parser first, the tunnel's relay after). A chunk stays valid until its `release()`: then its memory is
 * read into again, so whoever keeps it (a queued socket write) releases it only once the write is done.
 */
export class TunnelReads {
  #held: Array<{ chunk: Buffer; release: () => void }> = [];
  /** Keeps chunks (and asks for a pause) until `attach`. */
  #hold: ChunkSink = (chunk, release) => {
    this.#held.push({ chunk, release });
    return false;
  };
  sink: ChunkSink = this.#hold;
  #current: Slab = { memory: Buffer.allocUnsafe(SLAB_SIZE), used: 0, lent: 0 };
  #spare: Slab[] = [];

  /** For `tls.connect({ onread })`: `buffer` is asked for before every read, `callback` after it. */
  readonly onread = {
    buffer: (): Buffer => this.#nextBuffer(),
    callback: (nread: number): boolean => this.#delivered(nread),
  };

  /** From now on chunks are kept until `attach` (a parsed response head hands the socket over). */
  hold(): void {
    this.sink = this.#hold;
  }

  /** Hands over the kept chunks, then every further one, to `sink`; false: the socket should stay paused. */
  attach(sink: ChunkSink): boolean {
    this.sink = sink;
    let flowing = true;
    for (const { chunk, release } of this.#held.splice(0)) flowing = sink(chunk, release) && flowing;
    return flowing;
  }

  #nextBuffer(): Buffer {
    const slab = this.#current;
    // Nothing of this slab is still lent out: read into its start again (memory that is warm in cache).
    if (slab.lent === 0) slab.used = 0;
    if (slab.memory.length - slab.used < MIN_READ) {
      this.#current = this.#spare.pop() ?? { memory: Buffer.allocUnsafe(SLAB_SIZE), used: 0, lent: 0 };
      if (slab.lent === 0) this.#recycle(slab);
    }
    return this.#current.memory.subarray(this.#current.used);
  }

  #delivered(nread: number): boolean {
    const slab = this.#current;
    const chunk = slab.memory.subarray(slab.used, slab.used + nread);
    slab.used += nread;
    slab.lent += 1;
    let released = false;
    return this.sink(chunk, () => {
      if (released) return;
      released = true;
      slab.lent -= 1;
      if (slab.lent === 0 && slab !== this.#current) this.#recycle(slab);
    });
  }

  #recycle(slab: Slab): void {
    slab.used = 0;
    if (this.#spare.length < SPARE_SLABS) this.#spare.push(slab);
  }
}
