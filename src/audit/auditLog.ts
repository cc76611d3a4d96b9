// The audit sink: hash-chained JSON lines through pino's asynchronous file destination (sonic-boom),
// a Merkle tree with signed checkpoints, reopen after rotation, and its own health (fail closed).
import { fsync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { ChainHead } from './auditChain.ts';
import { readAuditSigner, type AuditSigner } from './auditCheckpoint.ts';
import { createCheckpointer } from './auditCheckpointer.ts';
import { watchLiveFile } from './auditLiveFile.ts';
import { openHashStore } from './auditHashStore.ts';
import { defaultAuditOrigin, defaultCheckpointFile, startLog } from './auditLogStart.ts';
import { leafHashHex } from './merkleTree.ts';
import type { AuditCheckpoint, AuditRecord } from './auditRecord.ts';
import { boundedRecordJson, DEFAULT_MAX_RECORD_BYTES } from './recordBound.ts';
import { startSyslogShipper, type SyslogObserver, type SyslogTarget } from './syslogShipper.ts';

export interface AuditLog {
  write(record: AuditRecord): void;
  /** False once a write to the file failed, true again once a write succeeds: the gateway denies traffic in between (fail closed). */
  readonly healthy: boolean;
  readonly lastError: string | undefined;
  /** Writes a last checkpoint and flushes everything written so far to disk. */
  close(): Promise<void>;
}

export interface ChainedAuditLog extends AuditLog {
  /** Writes a checkpoint, then reopens the file by its path (after logrotate moved it); retries a failed file. */
  reopen(): void;
  /** The last record in the chain (written or queued). */
  readonly head: ChainHead;
  /** Bytes accepted but not yet written to the file (a bulk writer waits while this is large). */
  readonly unwrittenBytes: number;
}

/** What the log reports to metrics (the logging itself is monitored). */
export interface AuditLogObserver {
  recordQueued(event: string): void;
  bytesWritten(bytes: number, atMs: number): void;
  writeFailed(err: Error): void;
  recordDropped(): void;
  checkpointWritten(): void;
  syslog?: SyslogObserver;
}

export interface AuditLogOptions {
  file: string;
  stdout?: boolean;
  /** PKCS#8 PEM ed25519 key that signs checkpoints; without it checkpoints carry the hash only. */
  signingKey?: string;
  /** The log's name in its checkpoints (C2SP origin line, also the signature's key name). */
  origin?: string;
  /** The latest checkpoint note, replaced atomically at every checkpoint. */
  checkpointFile?: string;
  /** The witnesses (audit.witnesses): the notes they cosigned, kept beside the log, bind where it may start. */
  witnesses?: readonly { name: string; vkey: string }[];
  /** A checkpoint after this many records or seconds, whichever comes first (and at reopen and close). */
  checkpoint?: { records: number; seconds: number };
  /** Also ship every line to this syslog receiver (a copy the gateway host cannot rewrite). */
  syslog?: SyslogTarget;
  /** Largest line a record may take (audit.maxRecordBytes); longer records are cut (recordBound.ts). */
  maxRecordBytes?: number;
  onError?: (err: Error) => void;
  /** Called when a write succeeds after a failure. */
  onRecovered?: () => void;
  observer?: AuditLogObserver;
  /** Called with each checkpoint note once it is durable and published (the witnesses' push). */
  onCheckpointDurable?: (note: string) => void;
}

/** Beyond this much unwritten data (a failing disk), new records are dropped and counted, not buffered. */
const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;
/** A batch this long is written at once (sonic-boom's own chunk is 16 KiB). */
const BATCH_CHARACTERS = 16 * 1024;

/**
 * The line exactly as `JSON.stringify({ seq, prev, time, ...record })` writes it (records never carry
 * those three names), without copying every record into a new object first.
 */
export function chainedLine(seq: number, prev: string, time: string, record: AuditRecord): string {
  return chainFields(seq, prev, time, JSON.stringify(record));
}

/** `{seq, prev, time, ...fields}` from the record's own JSON (`fields`). */
function chainFields(seq: number, prev: string, time: string, fields: string): string {
  return `{"seq":${seq},"prev":${JSON.stringify(prev)},"time":${JSON.stringify(time)}${fields === '{}' ? '}' : `,${fields.slice(1)}`}`;
}

export function openAuditLog(options: AuditLogOptions): ChainedAuditLog {
  mkdirSync(dirname(options.file), { recursive: true, mode: 0o750 });
  const origin = options.origin ?? defaultAuditOrigin(options.file);
  const checkpointFile = options.checkpointFile ?? defaultCheckpointFile(options.file);
  let signer: AuditSigner | undefined;
  if (options.signingKey) {
    const read = readAuditSigner(options.signingKey);
    if (!read.ok) throw new Error(read.error.message);
    signer = read.value;
  }
  const start = startLog(options.file, origin, checkpointFile, { witnesses: options.witnesses ?? [], ...(signer && { logKey: signer.publicKey }) });
  if (!start.ok) throw new Error(`audit log: ${start.message}`);
  const every = options.checkpoint ?? { records: 1000, seconds: 60 };
  const maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const observer = options.observer;
  // sync: false keeps the hot path off disk latency; minLength 0 still writes each record promptly,
  // and close() waits for the last byte, so a clean shutdown loses nothing. A failed write keeps its
  // bytes buffered: the next write or a reopen retries them, so a transient failure loses no record.
  // maxWrite stays at sonic-boom's 16 KiB: it measures the pending chunk on every write, so a larger
  // chunk makes each record cost more (1 MiB chunks cut bulk writing from ~70k to ~1k records/s).
  const file = pino.destination({ dest: options.file, sync: false, minLength: 0, maxLength: MAX_BUFFERED_BYTES, mkdir: true, append: true, mode: 0o640 });
  const echo = options.stdout ? pino.destination({ dest: 1, sync: false }) : undefined;
  const shipper = options.syslog && startSyslogShipper(options.syslog, observer?.syslog);

  let head: ChainHead = start.value.head;
  // The Merkle tree over every record: the right edge only (O(log n) hashes).
  const tree = start.value.tree;
  // Every leaf and completed node, for fast proofs (absent when it does not match the log).
  const store = openHashStore(options.file, start.value.baseSize, tree.size, start.value.since);
  const storeHash = store && ((h: string) => store.add(h));
  // A crash mid-line leaves a torn last line: the next record starts on a line of its own.
  let pendingPrefix = start.value.tornTail ? '\n' : '';
  let healthy = true;
  let lastError: string | undefined;
  let sinceCheckpoint = 0;
  let closed = false;
  let reopenPending = false;
  let queuedBytes = 0;
  let writtenBytes = 0;
  let fsyncAt = 0;
  const checkpointer = createCheckpointer({ file: options.file, origin, checkpointFile, signer, onError: (err) => observer?.writeFailed(err), ...(options.onCheckpointDurable && { onPublished: options.onCheckpointDurable }) });
  // Set while the path no longer names the file being written: records are held, not written.
  const liveFile = watchLiveFile(options.file);
  let detached: string | undefined;

  file.on('write', (n: number) => {
    writtenBytes += n;
    observer?.bytesWritten(n, Date.now());
    if (!healthy) {
      healthy = true;
      lastError = undefined;
      options.onRecovered?.();
    }
    // fsync once the checkpoint's bytes have reached the OS: a checkpoint is the durable mark.
    // (sonic-boom's `fd` is public at run time but missing from pino's typings.)
    const fd = (file as unknown as { fd: number }).fd;
    if (fsyncAt > 0 && writtenBytes >= fsyncAt && fd >= 0) {
      fsyncAt = 0;
      // Once on disk, the checkpoint is published (checkpoint file, saved tree): never ahead of the log.
      fsync(fd, (err) => {
        if (!err) checkpointer.durable();
      });
    }
  });
  file.on('error', (err: NodeJS.ErrnoException) => {
    if (healthy) options.onError?.(err);
    healthy = false;
    lastError = err.message;
    observer?.writeFailed(err);
    // A reopen asked for while a write was failing is forgotten by sonic-boom: ask again.
    if (reopenPending && err.syscall !== 'open' && err.syscall !== 'mkdir' && !closed) setImmediate(() => file.reopen());
  });
  file.on('ready', () => {
    reopenPending = false;
    liveFile.opened((file as unknown as { fd: number }).fd, writtenBytes);
    // Records held while the file was gone go to the reopened file now.
    if (detached !== undefined) {
      detached = undefined;
      flushBatch();
    }
  });
  // A dropped record is a hole in the chain (verify reports it as missing): refuse traffic meanwhile.
  // The dropped data is a whole batch of lines: each of its records is counted.
  file.on('drop', (data: string) => {
    queuedBytes -= Buffer.byteLength(data);
    healthy = false;
    lastError = `more than ${MAX_BUFFERED_BYTES} bytes of records could not be written yet`;
    for (const line of data.split('\n')) if (line !== '') observer?.recordDropped();
  });

  // Lines of the current event-loop turn, handed to the file in one write: a write per record cost
  // more than the record itself (a filesystem request, its completion callback, a 'write' event).
  // The chain head moves at once, record by record; only the bytes wait for the end of the turn.
  let batch = '';
  let batchScheduled = false;
  let fsyncAfterBatch = false;
  /** Characters at the start of the batch that go to the file only (the torn-tail newline). */
  let fileOnlyPrefix = 0;
  function flushBatch(): void {
    batchScheduled = false;
    store?.flush();
    if (batch === '' || detached !== undefined) return;
    const gone = liveFile.check((file as unknown as { fd: number }).fd, writtenBytes);
    if (gone !== undefined) {
      // Deleted, replaced or truncated: hold the records (not ready, 503) until a reopen.
      detached = gone;
      const err = new Error(`${gone}: holding records until the file is reopened (SIGUSR1)`);
      if (healthy) options.onError?.(err);
      healthy = false;
      lastError = err.message;
      observer?.writeFailed(err);
      return;
    }
    const bytes = batch;
    batch = '';
    queuedBytes += Buffer.byteLength(bytes);
    if (fsyncAfterBatch) {
      fsyncAfterBatch = false;
      fsyncAt = queuedBytes;
    }
    file.write(bytes);
    echo?.write(fileOnlyPrefix > 0 ? bytes.slice(fileOnlyPrefix) : bytes);
    fileOnlyPrefix = 0;
  }

  function append(record: AuditRecord, time: string): void {
    // Held records have a bound too: past it a record is dropped (counted) before it is chained.
    if (detached !== undefined && batch.length > MAX_BUFFERED_BYTES) return observer?.recordDropped();
    const seq = head.seq + 1;
    // Bounded before it is chained: the hash covers the line exactly as written.
    const line = chainFields(seq, head.hash, time, boundedRecordJson(record, maxRecordBytes));
    // One hash per record: the leaf of the tree is also the chain link the next record names.
    const hex = leafHashHex(line);
    head = { seq, hash: `sha256:${hex}` };
    tree.appendHex(hex, storeHash);
    if (pendingPrefix !== '' && batch === '') fileOnlyPrefix = pendingPrefix.length;
    batch += pendingPrefix + line + '\n';
    pendingPrefix = '';
    // A writer that queues records without yielding still hands over chunks of sonic-boom's size.
    if (batch.length >= BATCH_CHARACTERS) flushBatch();
    else if (!batchScheduled) {
      batchScheduled = true;
      setImmediate(flushBatch);
    }
    shipper?.send(line);
    observer?.recordQueued(record.event);
  }

  function checkpoint(): void {
    if (sinceCheckpoint === 0 || closed) return;
    const time = new Date().toISOString();
    // The note covers every record before this one: tree size = head.seq.
    const note = checkpointer.note(tree);
    // The right edge of the tree rides along: a verifier given only later files starts from it.
    const cp: AuditCheckpoint = { seq: head.seq, hash: head.hash, records: sinceCheckpoint, note, range: tree.toJSON().range };
    sinceCheckpoint = 0;
    // Set before the append: a checkpoint that fills the batch flushes it inside append, and that
    // flush must carry the fsync (not the next batch, which may come much later or go to another file).
    fsyncAfterBatch = true;
    append({ event: 'audit.checkpoint', checkpoint: cp }, time);
    checkpointer.queued(note, head, tree);
    // The stored hashes reach the file before the checkpoint is published: prove reads both.
    store?.flush(true);
    observer?.checkpointWritten();
  }

  // A new log says so in its first record, with what it knows of the log before it.
  const newLog = start.value.newLog;
  if (newLog) {
    append({ event: 'audit.log.new', detail: { ...newLog, origin } }, new Date().toISOString());
    sinceCheckpoint += 1;
  }

  const timer = setInterval(checkpoint, every.seconds * 1000);
  timer.unref();

  return {
    write(record) {
      // After close the destination is gone; a straggler must not crash the process.
      if (closed) return observer?.recordDropped();
      append(record, new Date().toISOString());
      sinceCheckpoint += 1;
      if (sinceCheckpoint >= every.records) checkpoint();
    },
    get healthy() {
      return healthy;
    },
    get lastError() {
      return lastError;
    },
    get head() {
      return head;
    },
    get unwrittenBytes() {
      return queuedBytes + batch.length - writtenBytes;
    },
    reopen() {
      if (closed) return;
      // The checkpoint usually lands in the file being rotated out (sonic-boom finishes the write in
      // flight on the old descriptor first); either way the chain runs on unbroken into the new file.
      checkpoint();
      flushBatch();
      checkpointer.saveState(head, tree);
      reopenPending = true;
      file.reopen();
    },
    close() {
      checkpoint();
      flushBatch();
      closed = true;
      // Records held for a deleted file go to a reopened one before the end (the 'ready' handler).
      if (detached !== undefined && !reopenPending) {
        reopenPending = true;
        file.reopen();
      }
      clearInterval(timer);
      // end() writes what is buffered, in order, after any write already in flight, then fsyncs
      // (flushSync could overtake an in-flight write and reorder the last records).
      return new Promise((resolve) => {
        let finished = false;
        const done = () => {
          if (finished) return;
          finished = true;
          // end() fsynced the file: the last checkpoint is durable.
          checkpointer.durable();
          void checkpointer
            .settled()
            .then(() => checkpointer.saveState(head, tree))
            .then(() => store?.close())
            .then(() => (shipper ? shipper.close() : undefined))
            .then(() => resolve());
        };
        file.once('close', done);
        file.once('error', done);
        // sonic-boom ignores a reopen asked for before end() and then never writes what it holds:
        // end only once the new file is open.
        if (reopenPending) file.once('ready', () => file.end());
        else file.end();
        echo?.end();
        setTimeout(done, 5000).unref();
      });
    },
  };
}
