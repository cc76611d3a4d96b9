// The user's token file (`$XDG_CONFIG_HOME/gatehouse/token`): read only when no other user can read it (as
// ssh treats keys), written atomically (temp file + rename, mode 0600, directory 0700), removed at logout.
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { parseStoredToken } from '../token/storedToken.ts';

/** A token as stored: the bearer, and what `gatehouse login` learned about it (absent for a token an administrator handed out). */
export interface StoredToken {
  token: string;
  /** Written by `gatehouse login` and each renewal; without them the token is never renewed. */
  login?: LoginFacts;
}

export interface LoginFacts {
  /** The gateway that issued it (`https://host:port`): renewal and logout go there. */
  gateway: string;
  user: string;
  obtainedAt: string;
  expiresAt: string;
  refreshUntil: string;
  revocationId: string;
}

export type TokenFileRead = { ok: true; stored: StoredToken } | { ok: false; missing: boolean; error: string };

/** Only base64url (and the standard alphabet's + / =) can travel in a Bearer header. */
export function cleanToken(text: string): string {
  return text.trim().replace(/^Bearer\s+/i, '').trim();
}

/** Why `token` cannot be sent, or undefined. */
export function tokenProblem(token: string, source: string): string | undefined {
  if (token.length === 0) return `${source} is empty`;
  if (!/^[A-Za-z0-9_\-=+/.]+$/.test(token)) return `${source} does not hold a token (expected one line of base64url text)`;
  return undefined;
}

const FACT_KEYS = ['gateway', 'user', 'obtainedAt', 'expiresAt', 'refreshUntil', 'revocationId'] as const;

/** The login facts of a stored JSON object, when every one is a string (else the token is treated as a plain one). */
function factsOf(parsed: Readonly<Record<string, unknown>>): LoginFacts | undefined {
  if (!FACT_KEYS.every((k) => typeof parsed[k] === 'string')) return undefined;
  const facts = Object.fromEntries(FACT_KEYS.map((k) => [k, parsed[k]])) as unknown as LoginFacts;
  return Number.isNaN(Date.parse(facts.expiresAt)) || Number.isNaN(Date.parse(facts.obtainedAt)) ? undefined : facts;
}

/** The file's text as a token: one line (a token minted by hand), or the JSON object `gatehouse login` writes. */
export function parseTokenText(text: string, source: string): { ok: true; stored: StoredToken } | { ok: false; error: string } {
  const parsed = parseStoredToken(text);
  if (!parsed.ok) return { ok: false, error: `${source} ${parsed.error}` };
  const token = parsed.fields === undefined ? cleanToken(parsed.token) : parsed.token;
  const problem = tokenProblem(token, source);
  if (problem) return { ok: false, error: problem };
  const login = parsed.fields && factsOf(parsed.fields);
  return { ok: true, stored: { token, ...(login && { login }) } };
}

/**
 * Reads the token file, refusing one that others may read or that is not a regular file: a token is a
 * credential, and one readable by other users of the machine must be treated as already given away.
 */
export function readTokenFile(file: string): TokenFileRead {
  let mode: number;
  try {
    // stat follows a link: the mode of the file the token is read from is what protects it.
    const stat = statSync(file);
    if (!stat.isFile()) return { ok: false, missing: false, error: `cannot read token file ${file}: ${stat.isDirectory() ? 'EISDIR' : 'not a regular file'}` };
    mode = stat.mode & 0o777;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, missing: code === 'ENOENT', error: code === 'ENOENT' ? `token file ${file} does not exist` : `cannot read token file ${file}: ${code ?? (err as Error).message}` };
  }
  if (mode & 0o077) return { ok: false, missing: false, error: `token file ${file} can be read by other users (mode ${mode.toString(8).padStart(4, '0')}): refusing to use it; chmod 600 it (and ask for a new token if others may have read it)` };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, missing: false, error: `cannot read token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  const parsed = parseTokenText(text, `token file ${file}`);
  return parsed.ok ? parsed : { ok: false, missing: false, error: parsed.error };
}

/**
 * Writes the token: a fresh temp file in the same directory (mode 0600 from its creation, never wider),
 * synced, then renamed over the old one, so a reader sees the old token or the new, never half of one.
 * The directory is created 0700 when missing.
 */
export function writeTokenFile(file: string, stored: StoredToken): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.token-${randomBytes(6).toString('hex')}.tmp`);
  const text = `${JSON.stringify({ token: stored.token, ...stored.login }, null, 2)}\n`;
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  // The umask cannot widen 0600, but may narrow it: make it exactly 0600.
  chmodSync(temp, 0o600);
  try {
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

/** Removes the token file; false when there was none. */
export function removeTokenFile(file: string): boolean {
  try {
    rmSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** A renewal lock older than this was left by a process that died: it is taken over. */
const STALE_LOCK_MS = 30_000;

/**
 * Takes `<file>.lock` (created exclusively) so that of several commands sharing one token file (a tunnel and
 * a publisher) only one asks the gateway for a renewal; the others read the renewed file. Returns the release,
 * or undefined while another process holds it.
 */
export function lockTokenFile(file: string): (() => void) | undefined {
  const lock = `${file}.lock`;
  const release = () => rmSync(lock, { force: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      closeSync(openSync(lock, 'wx', 0o600));
      return release;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return () => {};
      try {
        if (Date.now() - statSync(lock).mtimeMs < STALE_LOCK_MS) return undefined;
        rmSync(lock, { force: true });
      } catch {
        // Released meanwhile: try again.
      }
    }
  }
  return undefined;
}
