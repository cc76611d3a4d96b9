// The gateway's side of its witnesses: each durable checkpoint goes to every witness with a
// consistency proof from the size that witness last cosigned (from the stored hashes), in the
// background (never on the audit write path), retried with backoff; the cosigned note is kept.
import { existsSync, readFileSync } from 'node:fs';
import { displaySafe } from '../text/displayText.ts';
import { replaceFileDurably } from './auditChain.ts';
import { storedSubtreeRoots } from './auditHashStore.ts';
import { cosignedCheckpointFile } from './cosignedAnchors.ts';
import { cosignedBy, parseWitnessVerifierKey, type WitnessKey } from './cosignature.ts';
import { consistencyProof } from './merkleTree.ts';
import { parseCheckpointNote, parseNote } from './signedNote.ts';
import { addCheckpointBody, witnessClient, type WitnessReply } from './witnessClient.ts';

/** One entry of audit.witnesses (paths already resolved). */
export interface WitnessTarget {
  url: string;
  name: string;
  /** The witness's verifier key (`gatehouse audit witness --vkey`). */
  vkey: string;
  ca?: string;
  cert?: string;
  key?: string;
}

export interface WitnessPushObserver {
  cosigned(witness: string, roundTripMs: number, atMs: number): void;
  failed(witness: string, reason: 'unreachable' | 'refused' | 'bad-cosignature' | 'no-proof'): void;
}

export interface WitnessPusher {
  /** A new checkpoint note is durable: send it (only the newest waits when a witness is behind). */
  push(note: string): void;
  /** When any witness last cosigned (ms), or undefined. */
  lastCosignedAt(): number | undefined;
  close(): void;
}

const MAX_BACKOFF_MS = 60_000;

/** The size this witness cosigned last, from the kept note (0 when none: the witness's 409 says). */
function keptSize(file: string, key: WitnessKey): number {
  if (!existsSync(file)) return 0;
  const cp = parseCheckpointNote(readFileSync(file, 'utf8'));
  return cp.ok && cosignedBy(cp.value.body, cp.value.signatures, key) !== undefined ? cp.value.size : 0;
}

interface PusherOptions {
  auditFile: string;
  checkpointFile: string;
  witnesses: readonly WitnessTarget[];
  observer?: WitnessPushObserver;
  log?: (line: string) => void;
  heartbeatMs?: number;
}

/** One witness: the newest durable note goes to it, one at a time, with backoff while it is down or refusing. */
class WitnessFeed {
  readonly #target: WitnessTarget;
  readonly #key: WitnessKey;
  readonly #client: ReturnType<typeof witnessClient>;
  readonly #keptFile: string;
  readonly #options: PusherOptions;
  readonly #log: (line: string) => void;
  readonly #cosigned: (atMs: number) => void;
  #known: number;
  #latest: string | undefined;
  #done: string | undefined;
  #running = false;
  #retry: NodeJS.Timeout | undefined;
  #backoff = 1000;
  #closed = false;

  constructor(target: WitnessTarget, options: PusherOptions, log: (line: string) => void, cosigned: (atMs: number) => void) {
    const key = parseWitnessVerifierKey(target.vkey);
    if (!key.ok) throw new Error(`audit.witnesses ${target.name}: ${key.message}`);
    const read = (file: string | undefined) => (file === undefined ? undefined : readFileSync(file, 'utf8'));
    this.#target = target;
    this.#key = key.value;
    this.#client = witnessClient({ url: target.url, ...(target.ca && { ca: read(target.ca) }), ...(target.cert && { cert: read(target.cert) }), ...(target.key && { key: read(target.key) }) });
    this.#keptFile = cosignedCheckpointFile(options.checkpointFile, target.name);
    this.#known = keptSize(this.#keptFile, key.value);
    this.#options = options;
    this.#log = log;
    this.#cosigned = cosigned;
  }

  push(note: string): void {
    this.#latest = note;
    if (this.#retry === undefined) void this.#run();
  }

  heartbeat(): void {
    // The witness cosigns the same checkpoint again (same size and root): a fresh timestamp.
    if (this.#retry !== undefined || this.#running || this.#latest === undefined) return;
    this.#done = undefined;
    void this.#run();
  }

  close(): void {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#client.close();
  }

  #proofFrom(old: number, size: number): Buffer[] | undefined {
    if (old === 0 || old >= size) return [];
    const stored = storedSubtreeRoots(this.#options.auditFile, size);
    if (!stored) return undefined;
    try {
      return consistencyProof(stored.roots, old, size);
    } finally {
      stored.close();
    }
  }

  /** One note to the witness; a 409 (it knows another size) is followed once by the right proof. */
  async #send(note: string): Promise<'ok' | 'retry'> {
    const cp = parseCheckpointNote(note);
    if (!cp.ok) return 'ok';
    const { name, url } = this.#target;
    const observer = this.#options.observer;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const proof = this.#proofFrom(this.#known, cp.value.size);
      if (!proof) {
        observer?.failed(name, 'no-proof');
        return 'retry';
      }
      let reply: WitnessReply;
      try {
        reply = await this.#client.post(addCheckpointBody(this.#known, proof, note));
      } catch (err) {
        observer?.failed(name, 'unreachable');
        this.#log(`gatehouse: audit witness ${name} (${url}) unreachable: ${err instanceof Error ? err.message : String(err)}`);
        return 'retry';
      }
      if (reply.status === 409 && /^\d+\n$/.test(reply.body) && Number(reply.body) !== this.#known) {
        this.#known = Number(reply.body);
        continue;
      }
      return this.#accept(note, cp.value.body, cp.value.size, reply);
    }
    observer?.failed(name, 'refused');
    return 'retry';
  }

  /** Keeps the witness's cosignature of `note` when its reply carries a valid one. */
  async #accept(note: string, body: string, size: number, reply: WitnessReply): Promise<'ok' | 'retry'> {
    const name = this.#target.name;
    const observer = this.#options.observer;
    if (reply.status !== 200) {
      observer?.failed(name, 'refused');
      this.#log(`gatehouse: audit witness ${name} refused the checkpoint of size ${size} (from size ${this.#known}): ${reply.status} ${displaySafe(reply.body.trim().slice(0, 200))}`);
      return 'retry';
    }
    const cosigned = parseNote(note + reply.body);
    if (!cosigned.ok || cosignedBy(body, cosigned.signatures, this.#key) === undefined) {
      observer?.failed(name, 'bad-cosignature');
      this.#log(`gatehouse: audit witness ${name} answered without a valid cosignature by its key`);
      return 'retry';
    }
    // Only the witness's own cosignature lines are kept beside the log's note.
    const lines = reply.body.split('\n').filter((l) => l.startsWith(`\u2014 ${name} `));
    await replaceFileDurably(this.#keptFile, `${note}${lines.map((l) => `${l}\n`).join('')}`);
    this.#known = size;
    const now = Date.now();
    this.#cosigned(now);
    observer?.cosigned(name, reply.ms, now);
    return 'ok';
  }

  async #run(): Promise<void> {
    if (this.#running || this.#closed) return;
    this.#running = true;
    this.#retry = undefined;
    try {
      while (this.#latest !== undefined && this.#latest !== this.#done && !this.#closed) {
        const note = this.#latest;
        if ((await this.#send(note)) === 'retry') {
          // Backoff while the witness is down or refusing; a newer checkpoint is sent on the next try.
          this.#retry = setTimeout(() => void this.#run(), this.#backoff);
          this.#retry.unref();
          this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF_MS);
          return;
        }
        this.#backoff = 1000;
        this.#done = note;
      }
    } catch (err) {
      this.#log(`gatehouse: audit witness ${this.#target.name}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.#running = false;
    }
  }
}

/**
 * `heartbeatMs`: an idle log makes no checkpoints; its last one is sent again this often, so a
 * witness's fresh cosignature says the log is alive (and /readyz can tell a silent witness).
 */
export function startWitnessPusher(options: PusherOptions): WitnessPusher {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let lastCosigned: number | undefined;
  const feeds = options.witnesses.map((target) => new WitnessFeed(target, options, log, (at) => (lastCosigned = at)));
  const heartbeatMs = options.heartbeatMs;
  const heartbeat =
    heartbeatMs === undefined
      ? undefined
      : setInterval(() => {
          if (Date.now() - (lastCosigned ?? 0) >= heartbeatMs) feeds.forEach((f) => f.heartbeat());
        }, heartbeatMs);
  heartbeat?.unref();
  return {
    push: (note) => feeds.forEach((f) => f.push(note)),
    lastCosignedAt: () => lastCosigned,
    close: () => {
      if (heartbeat) clearInterval(heartbeat);
      feeds.forEach((f) => f.close());
    },
  };
}
