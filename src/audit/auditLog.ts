// The audit sink: hash-chained JSON lines through pino's asynchronous file destination (sonic-boom),
// a Merkle tree with signed checkpoints, reopen after rotation, and its own health (fail closed).
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ChainHead } from './auditChain.ts';
import { readAuditSigner, type AuditSigner } from './auditCheckpoint.ts';
import { createCheckpointer, type Checkpointer } from './auditCheckpointer.ts';
import { AuditFileSink, MAX_BUFFERED_BYTES } from './auditFileSink.ts';
import { openHashStore, type HashStore } from './auditHashStore.ts';
import { defaultAuditOrigin, defaultCheckpointFile, startLog, type LogStart } from './auditLogStart.ts';
import { leafHashHex, type CompactTree } from './merkleTree.ts';
import type { AuditCheckpoint, AuditRecord } from './auditRecord.ts';
import { boundedRecordJson, DEFAULT_MAX_RECORD_BYTES } from './recordBound.ts';
import { startSyslogShipper, type SyslogObserver, type SyslogShipper, type SyslogTarget } from './syslogShipper.ts';

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
  const checkpointer = createCheckpointer({ file: options.file, origin, checkpointFile, signer, onError: (err) => options.observer?.writeFailed(err), ...(options.onCheckpointDurable && { onPublished: options.onCheckpointDurable }) });
  const log = new HashChainedLog(options, start.value, checkpointer);
  // A new log says so in its first record, with what it knows of the log before it.
  if (start.value.newLog) log.write({ event: 'audit.log.new', detail: { ...start.value.newLog, origin } });
  return log;
}

/**
 * The log proper: each record bounded, chained to the one before and added to the Merkle tree at once;
 * the lines of one event-loop turn go to the file in one batch; a checkpoint every N records or seconds.
 */
class HashChainedLog implements ChainedAuditLog {
  readonly #options: AuditLogOptions;
  readonly #checkpointer: Checkpointer;
  readonly #sink: AuditFileSink;
  readonly #shipper: SyslogShipper | undefined;
  readonly #every: { records: number; seconds: number };
  readonly #maxRecordBytes: number;
  // The Merkle tree over every record: the right edge only (O(log n) hashes).
  readonly #tree: CompactTree;
  // Every leaf and completed node, for fast proofs (absent when it does not match the log).
  readonly #store: HashStore | undefined;
  readonly #storeHash: ((hash: string) => void) | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #flushSoon = (): void => this.#flushBatch();
  #head: ChainHead;
  // A crash mid-line leaves a torn last line: the next record starts on a line of its own.
  #pendingPrefix: string;
  #sinceCheckpoint = 0;
  #closed = false;
  // Lines of the current event-loop turn, handed to the file in one write: a write per record cost
  // more than the record itself (a filesystem request, its completion callback, a 'write' event).
  // The chain head moves at once, record by record; only the bytes wait for the end of the turn.
  #batch = '';
  #batchScheduled = false;
  #fsyncAfterBatch = false;
  /** Characters at the start of the batch that go to the file only (the torn-tail newline). */
  #fileOnlyPrefix = 0;

  constructor(options: AuditLogOptions, start: LogStart, checkpointer: Checkpointer) {
    this.#options = options;
    this.#checkpointer = checkpointer;
    this.#every = options.checkpoint ?? { records: 1000, seconds: 60 };
    this.#maxRecordBytes = options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
    this.#shipper = options.syslog && startSyslogShipper(options.syslog, options.observer?.syslog);
    this.#head = start.head;
    this.#tree = start.tree;
    const store = openHashStore(options.file, start.baseSize, start.tree.size, start.since);
    this.#store = store;
    this.#storeHash = store && ((hash: string) => store.add(hash));
    this.#pendingPrefix = start.tornTail ? '\n' : '';
    const observer = options.observer;
    this.#sink = new AuditFileSink(options.file, options.stdout === true, {
      bytesWritten: (n, atMs) => observer?.bytesWritten(n, atMs),
      failed(err, firstFailure) {
        if (firstFailure) options.onError?.(err);
        observer?.writeFailed(err);
      },
      recovered: () => options.onRecovered?.(),
      recordDropped: () => observer?.recordDropped(),
      durable: () => checkpointer.durable(),
      // Records held while the file was gone go to the reopened file now.
      reattached: this.#flushSoon,
    });
    this.#timer = setInterval(() => this.#checkpoint(), this.#every.seconds * 1000);
    this.#timer.unref();
  }

  write(record: AuditRecord): void {
    // After close the destination is gone; a straggler must not crash the process.
    if (this.#closed) return this.#options.observer?.recordDropped();
    this.#append(record, new Date().toISOString());
    this.#sinceCheckpoint += 1;
    if (this.#sinceCheckpoint >= this.#every.records) this.#checkpoint();
  }

  get healthy(): boolean {
    return this.#sink.healthy;
  }

  get lastError(): string | undefined {
    return this.#sink.lastError;
  }

  get head(): ChainHead {
    return this.#head;
  }

  get unwrittenBytes(): number {
    return this.#sink.unwrittenBytes + this.#batch.length;
  }

  reopen(): void {
    if (this.#closed) return;
    // The checkpoint usually lands in the file being rotated out (sonic-boom finishes the write in
    // flight on the old descriptor first); either way the chain runs on unbroken into the new file.
    this.#checkpoint();
    this.#flushBatch();
    this.#checkpointer.saveState(this.#head, this.#tree);
    this.#sink.reopen();
  }

  async close(): Promise<void> {
    this.#checkpoint();
    this.#flushBatch();
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#sink.end();
    // end() fsynced the file: the last checkpoint is durable.
    this.#checkpointer.durable();
    await this.#checkpointer.settled();
    this.#checkpointer.saveState(this.#head, this.#tree);
    await this.#store?.close();
    await this.#shipper?.close();
  }

  #flushBatch(): void {
    this.#batchScheduled = false;
    this.#store?.flush();
    if (this.#batch === '' || !this.#sink.accepting()) return;
    const bytes = this.#batch;
    this.#batch = '';
    this.#sink.write(bytes, this.#fileOnlyPrefix, this.#fsyncAfterBatch);
    this.#fsyncAfterBatch = false;
    this.#fileOnlyPrefix = 0;
  }

  #append(record: AuditRecord, time: string): void {
    // Held records have a bound too: past it a record is dropped (counted) before it is chained.
    if (this.#sink.detached && this.#batch.length > MAX_BUFFERED_BYTES) return this.#options.observer?.recordDropped();
    const seq = this.#head.seq + 1;
    // Bounded before it is chained: the hash covers the line exactly as written.
    const line = chainFields(seq, this.#head.hash, time, boundedRecordJson(record, this.#maxRecordBytes));
    // One hash per record: the leaf of the tree is also the chain link the next record names.
    const hex = leafHashHex(line);
    this.#head = { seq, hash: `sha256:${hex}` };
    this.#tree.appendHex(hex, this.#storeHash);
    if (this.#pendingPrefix !== '' && this.#batch === '') this.#fileOnlyPrefix = this.#pendingPrefix.length;
    this.#batch += this.#pendingPrefix + line + '\n';
    this.#pendingPrefix = '';
    // A writer that queues records without yielding still hands over chunks of sonic-boom's size.
    if (this.#batch.length >= BATCH_CHARACTERS) this.#flushBatch();
    else if (!this.#batchScheduled) {
      this.#batchScheduled = true;
      setImmediate(this.#flushSoon);
    }
    this.#shipper?.send(line);
    this.#options.observer?.recordQueued(record.event);
  }

  #checkpoint(): void {
    if (this.#sinceCheckpoint === 0 || this.#closed) return;
    const time = new Date().toISOString();
    // The note covers every record before this one: tree size = head.seq.
    const note = this.#checkpointer.note(this.#tree);
    // The right edge of the tree rides along: a verifier given only later files starts from it.
    const cp: AuditCheckpoint = { seq: this.#head.seq, hash: this.#head.hash, records: this.#sinceCheckpoint, note, range: this.#tree.toJSON().range };
    this.#sinceCheckpoint = 0;
    // Set before the append: a checkpoint that fills the batch flushes it inside append, and that
    // flush must carry the fsync (not the next batch, which may come much later or go to another file).
    this.#fsyncAfterBatch = true;
    this.#append({ event: 'audit.checkpoint', checkpoint: cp }, time);
    this.#checkpointer.queued(note, this.#head, this.#tree);
    // The stored hashes reach the file before the checkpoint is published: prove reads both.
    this.#store?.flush(true);
    this.#options.observer?.checkpointWritten();
  }
}
