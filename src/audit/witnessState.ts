// The witness's memory: per origin the latest checkpoint it cosigned (size, root, the cosigned note),
// and how many checkpoints it refused; replaced atomically (temp + fsync + rename) before it answers.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface WitnessedLog {
  size: number;
  /** base64 root hash */
  root: string;
  /** The checkpoint note with the log's signature(s) and this witness's cosignature. */
  note: string;
  /** When it was cosigned (POSIX seconds). */
  time: number;
}

export interface WitnessState {
  logs: Record<string, WitnessedLog>;
  /** Checkpoints refused because they did not extend what was witnessed (rewrites, rollbacks). */
  refused: number;
  lastRefusal?: { origin: string; time: string; reason: string };
}

const STATE_FILE = 'state.json';

/** `gateway.example.org/audit` -> `gateway.example.org%2Faudit.checkpoint` in the state directory. */
export function witnessCheckpointFile(stateDir: string, origin: string): string {
  return join(stateDir, `${encodeURIComponent(origin)}.checkpoint`);
}

export function readWitnessState(stateDir: string): { ok: true; value: WitnessState } | { ok: false; message: string } {
  const file = join(stateDir, STATE_FILE);
  if (!existsSync(file)) return { ok: true, value: { logs: {}, refused: 0 } };
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as Partial<WitnessState>;
    if (typeof v.logs !== 'object' || v.logs === null || typeof v.refused !== 'number') throw new Error('not a witness state');
    return { ok: true, value: { logs: v.logs, refused: v.refused, ...(v.lastRefusal && { lastRefusal: v.lastRefusal }) } };
  } catch (err) {
    // Never start from nothing over a damaged state: that would let any history be cosigned anew.
    return { ok: false, message: `witness state ${file}: ${err instanceof Error ? err.message : String(err)} (restore it; the witness does not start without it)` };
  }
}

function replaceDurably(file: string, text: string): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o640 });
  const fd = openSync(temporary, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, file);
}

/** Saves the state (and the changed origin's checkpoint file) before the witness answers. */
export function saveWitnessState(stateDir: string, state: WitnessState, origin?: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o750 });
  replaceDurably(join(stateDir, STATE_FILE), JSON.stringify(state, null, 1) + '\n');
  const log = origin === undefined ? undefined : state.logs[origin];
  if (origin !== undefined && log) replaceDurably(witnessCheckpointFile(stateDir, origin), log.note);
  const dir = openSync(stateDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
