// Where the audit log's batches of lines go: pino's asynchronous file destination (sonic-boom), its
// health (fail closed), the fsync behind each checkpoint, reopen after rotation, and a file lost under it.
import { fsync } from 'node:fs';
import pino from 'pino';
import { watchLiveFile, type LiveFileWatch } from './auditLiveFile.ts';

/** Beyond this much unwritten data (a failing disk), new records are dropped and counted, not buffered. */
export const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

/** What the sink tells the log it writes for. */
export interface AuditFileEvents {
  /** Bytes reached the OS. */
  bytesWritten(bytes: number, atMs: number): void;
  /** A write failed, or the file was lost: the log is unhealthy until a write succeeds. */
  failed(err: Error, firstFailure: boolean): void;
  /** A write succeeded after a failure. */
  recovered(): void;
  /** A whole batch was dropped: one call per line in it. */
  recordDropped(): void;
  /** The bytes asked to be made durable (`write(…, fsync)`) are on disk. */
  durable(): void;
  /** The file is open again after being lost: the held lines may go now. */
  reattached(): void;
}

/** sonic-boom's `fd` is public at run time but missing from pino's typings. */
type Destination = ReturnType<typeof pino.destination> & { fd: number };

/**
 * One audit file being written: `write` hands it a batch of lines, `accepting` says whether a batch may
 * go now (false while the file is lost, deleted or truncated under the writer, and held for a reopen).
 */
export class AuditFileSink {
  readonly #file: Destination;
  readonly #echo: Destination | undefined;
  readonly #events: AuditFileEvents;
  // Set while the path no longer names the file being written: lines are held, not written.
  readonly #liveFile: LiveFileWatch;
  #detached: string | undefined;
  #healthy = true;
  #lastError: string | undefined;
  #ending = false;
  #reopenPending = false;
  #queuedBytes = 0;
  #writtenBytes = 0;
  #fsyncAt = 0;

  constructor(path: string, echoToStdout: boolean, events: AuditFileEvents) {
    this.#events = events;
    this.#liveFile = watchLiveFile(path);
    // sync: false keeps the hot path off disk latency; minLength 0 still writes each record promptly,
    // and end() waits for the last byte, so a clean shutdown loses nothing. A failed write keeps its
    // bytes buffered: the next write or a reopen retries them, so a transient failure loses no record.
    // maxWrite stays at sonic-boom's 16 KiB: it measures the pending chunk on every write, so a larger
    // chunk makes each record cost more (1 MiB chunks cut bulk writing from ~70k to ~1k records/s).
    this.#file = pino.destination({ dest: path, sync: false, minLength: 0, maxLength: MAX_BUFFERED_BYTES, mkdir: true, append: true, mode: 0o640 }) as Destination;
    this.#echo = echoToStdout ? (pino.destination({ dest: 1, sync: false }) as Destination) : undefined;
    this.#file.on('write', (n: number) => this.#written(n));
    this.#file.on('error', (err: NodeJS.ErrnoException) => this.#writeFailed(err));
    this.#file.on('ready', () => this.#opened());
    this.#file.on('drop', (data: string) => this.#dropped(data));
  }

  get healthy(): boolean {
    return this.#healthy;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** True while the file is lost and lines are held. */
  get detached(): boolean {
    return this.#detached !== undefined;
  }

  /** Bytes accepted but not yet written. */
  get unwrittenBytes(): number {
    return this.#queuedBytes - this.#writtenBytes;
  }

  /** Whether a batch may be written now (one fstat per batch, not per record: cheap next to the write it guards). */
  accepting(): boolean {
    if (this.#detached !== undefined) return false;
    const gone = this.#liveFile.check(this.#file.fd, this.#writtenBytes);
    if (gone === undefined) return true;
    // Deleted, replaced or truncated: hold the lines (not ready, 503) until a reopen.
    this.#detached = gone;
    this.#fail(new Error(`${gone}: holding records until the file is reopened (SIGUSR1)`));
    return false;
  }

  /**
   * Hands one batch of lines to the file; its `fileOnly` leading characters are not echoed to stdout (the
   * torn-tail newline); with `durable`, fsyncs once these bytes reached the OS, then calls `durable()`.
   */
  write(batch: string, fileOnly: number, durable: boolean): void {
    this.#queuedBytes += Buffer.byteLength(batch);
    if (durable) this.#fsyncAt = this.#queuedBytes;
    this.#file.write(batch);
    this.#echo?.write(fileOnly > 0 ? batch.slice(fileOnly) : batch);
  }

  /** Opens the file again by its path (after logrotate moved it). */
  reopen(): void {
    this.#reopenPending = true;
    this.#file.reopen();
  }

  /** Writes what is buffered, in order, fsyncs and closes; resolves at the latest after 5 s. */
  end(): Promise<void> {
    this.#ending = true;
    // Lines held for a deleted file go to a reopened one before the end (the 'ready' handler).
    if (this.#detached !== undefined && !this.#reopenPending) this.reopen();
    // end() writes what is buffered, in order, after any write already in flight, then fsyncs
    // (flushSync could overtake an in-flight write and reorder the last lines).
    return new Promise((resolve) => {
      const file = this.#file;
      file.once('close', resolve);
      file.once('error', resolve);
      // sonic-boom ignores a reopen asked for before end() and then never writes what it holds:
      // end only once the new file is open.
      if (this.#reopenPending) file.once('ready', () => file.end());
      else file.end();
      this.#echo?.end();
      setTimeout(resolve, 5000).unref();
    });
  }

  #fail(err: Error): void {
    this.#events.failed(err, this.#healthy);
    this.#healthy = false;
    this.#lastError = err.message;
  }

  #written(n: number): void {
    this.#writtenBytes += n;
    this.#events.bytesWritten(n, Date.now());
    if (!this.#healthy) {
      this.#healthy = true;
      this.#lastError = undefined;
      this.#events.recovered();
    }
    // fsync once the checkpoint's bytes have reached the OS: a checkpoint is the durable mark.
    const fd = this.#file.fd;
    if (this.#fsyncAt > 0 && this.#writtenBytes >= this.#fsyncAt && fd >= 0) {
      this.#fsyncAt = 0;
      // Once on disk, the checkpoint is published (checkpoint file, saved tree): never ahead of the log.
      fsync(fd, (err) => {
        if (!err) this.#events.durable();
      });
    }
  }

  #writeFailed(err: NodeJS.ErrnoException): void {
    this.#fail(err);
    // A reopen asked for while a write was failing is forgotten by sonic-boom: ask again.
    if (this.#reopenPending && err.syscall !== 'open' && err.syscall !== 'mkdir' && !this.#ending) setImmediate(() => this.#file.reopen());
  }

  #opened(): void {
    this.#reopenPending = false;
    this.#liveFile.opened(this.#file.fd, this.#writtenBytes);
    // Lines held while the file was gone go to the reopened file now.
    if (this.#detached !== undefined) {
      this.#detached = undefined;
      this.#events.reattached();
    }
  }

  // A dropped record is a hole in the chain (verify reports it as missing): refuse traffic meanwhile.
  // The dropped data is a whole batch of lines: each of its records is counted.
  #dropped(data: string): void {
    this.#queuedBytes -= Buffer.byteLength(data);
    this.#healthy = false;
    this.#lastError = `more than ${MAX_BUFFERED_BYTES} bytes of records could not be written yet`;
    for (const line of data.split('\n')) if (line !== '') this.#events.recordDropped();
  }
}
