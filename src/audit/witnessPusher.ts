// The gateway's side of its witnesses: each durable checkpoint goes to every witness with a
// consistency proof from the size that witness last cosigned (from the stored hashes), in the
// background (never on the audit write path), retried with backoff; the cosigned note is kept.
import { existsSync, readFileSync } from 'node:fs';
import { displaySafe } from '../cli/displayText.ts';
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

/**
 * `heartbeatMs`: an idle log makes no checkpoints; its last one is sent again this often, so a
 * witness's fresh cosignature says the log is alive (and /readyz can tell a silent witness).
 */
export function startWitnessPusher(options: { auditFile: string; checkpointFile: string; witnesses: readonly WitnessTarget[]; observer?: WitnessPushObserver; log?: (line: string) => void; heartbeatMs?: number }): WitnessPusher {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let lastCosigned: number | undefined;
  const pushers = options.witnesses.map((target) => {
    const key = parseWitnessVerifierKey(target.vkey);
    if (!key.ok) throw new Error(`audit.witnesses ${target.name}: ${key.message}`);
    const read = (file: string | undefined) => (file === undefined ? undefined : readFileSync(file, 'utf8'));
    const client = witnessClient({ url: target.url, ...(target.ca && { ca: read(target.ca) }), ...(target.cert && { cert: read(target.cert) }), ...(target.key && { key: read(target.key) }) });
    const keptFile = cosignedCheckpointFile(options.checkpointFile, target.name);
    let known = keptSize(keptFile, key.value);
    let latest: string | undefined;
    let done: string | undefined;
    let running = false;
    let retry: NodeJS.Timeout | undefined;
    let backoff = 1000;
    let closed = false;

    const proofFrom = (old: number, size: number): Buffer[] | undefined => {
      if (old === 0 || old >= size) return [];
      const stored = storedSubtreeRoots(options.auditFile, size);
      if (!stored) return undefined;
      try {
        return consistencyProof(stored.roots, old, size);
      } finally {
        stored.close();
      }
    };

    /** One note to the witness; a 409 (it knows another size) is followed once by the right proof. */
    const send = async (note: string): Promise<'ok' | 'retry'> => {
      const cp = parseCheckpointNote(note);
      if (!cp.ok) return 'ok';
      for (let attempt = 0; attempt < 2; attempt += 1) {
        const proof = proofFrom(known, cp.value.size);
        if (!proof) {
          options.observer?.failed(target.name, 'no-proof');
          return 'retry';
        }
        let reply: WitnessReply;
        try {
          reply = await client.post(addCheckpointBody(known, proof, note));
        } catch (err) {
          options.observer?.failed(target.name, 'unreachable');
          log(`gatehouse: audit witness ${target.name} (${target.url}) unreachable: ${err instanceof Error ? err.message : String(err)}`);
          return 'retry';
        }
        if (reply.status === 409 && /^\d+\n$/.test(reply.body) && Number(reply.body) !== known) {
          known = Number(reply.body);
          continue;
        }
        if (reply.status !== 200) {
          options.observer?.failed(target.name, 'refused');
          log(`gatehouse: audit witness ${target.name} refused the checkpoint of size ${cp.value.size} (from size ${known}): ${reply.status} ${displaySafe(reply.body.trim().slice(0, 200))}`);
          return 'retry';
        }
        const cosigned = parseNote(note + reply.body);
        if (!cosigned.ok || cosignedBy(cp.value.body, cosigned.signatures, key.value) === undefined) {
          options.observer?.failed(target.name, 'bad-cosignature');
          log(`gatehouse: audit witness ${target.name} answered without a valid cosignature by its key`);
          return 'retry';
        }
        // Only the witness's own cosignature lines are kept beside the log's note.
        const lines = reply.body.split('\n').filter((l) => l.startsWith(`\u2014 ${target.name} `));
        await replaceFileDurably(keptFile, `${note}${lines.map((l) => `${l}\n`).join('')}`);
        known = cp.value.size;
        const now = Date.now();
        lastCosigned = now;
        options.observer?.cosigned(target.name, reply.ms, now);
        return 'ok';
      }
      options.observer?.failed(target.name, 'refused');
      return 'retry';
    };

    const run = async (): Promise<void> => {
      if (running || closed) return;
      running = true;
      retry = undefined;
      try {
        while (latest !== undefined && latest !== done && !closed) {
          const note = latest;
          if ((await send(note)) === 'retry') {
            // Backoff while the witness is down or refusing; a newer checkpoint is sent on the next try.
            retry = setTimeout(() => void run(), backoff);
            retry.unref();
            backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
            return;
          }
          backoff = 1000;
          done = note;
        }
      } catch (err) {
        log(`gatehouse: audit witness ${target.name}: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        running = false;
      }
    };

    return {
      push(note: string) {
        latest = note;
        if (retry === undefined) void run();
      },
      heartbeat() {
        // The witness cosigns the same checkpoint again (same size and root): a fresh timestamp.
        if (retry !== undefined || running || latest === undefined) return;
        done = undefined;
        void run();
      },
      close() {
        closed = true;
        if (retry) clearTimeout(retry);
        client.close();
      },
    };
  });
  const heartbeat = options.heartbeatMs === undefined ? undefined : setInterval(() => {
    if (Date.now() - (lastCosigned ?? 0) >= (options.heartbeatMs as number)) pushers.forEach((p) => p.heartbeat());
  }, options.heartbeatMs);
  heartbeat?.unref();
  return {
    push: (note) => pushers.forEach((p) => p.push(note)),
    lastCosignedAt: () => lastCosigned,
    close: () => {
      if (heartbeat) clearInterval(heartbeat);
      pushers.forEach((p) => p.close());
    },
  };
}
