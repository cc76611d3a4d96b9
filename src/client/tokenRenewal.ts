// Keeps a token from `gatehouse login` fresh while tunnel or publish runs: refreshes it at about two thirds
// of its life, writes the token file anew (atomically), and hands the new token to every later connection.
import type { ClientSettings } from './clientSettings.ts';
import { endpointOf, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { refreshLogin } from './loginFlow.ts';
import { lockTokenFile, readTokenFile, writeTokenFile, type LoginFacts, type StoredToken } from './tokenFile.ts';

export interface TokenKeeper {
  /** The token to send now: every new tunnel and registration reads it (see TokenSource). */
  readonly holder: { current: string };
  /** Called after each renewal (the publisher registers again with the new token). */
  onRenewed(listener: () => void): void;
  stop(): void;
}

export interface KeeperOptions {
  endpoint: GatewayEndpoint;
  file: string;
  stored: StoredToken & { login: LoginFacts };
  say: (line: string) => void;
}

/** After a refusal, how often the file is read again for a token another `gatehouse login` stored. */
const REREAD_MS = 15_000;
/** How soon a command that found another one renewing looks at the file again. */
const LOCKED_RETRY_MS = 1_000;
/** A network failure is retried this soon at most (less when the token ends sooner). */
const RETRY_MAX_MS = 30_000;
/** Never ask later than this before the token ends: the gateway needs the old one to accept the refresh. */
const MARGIN_MS = 5_000;

const expiryOf = (stored: StoredToken) => Date.parse(stored.login?.expiresAt ?? '') || 0;

/**
 * When to refresh: two thirds into the token's life, and never within MARGIN_MS of its end (a token with
 * little left, e.g. read after a pause, is refreshed at once). 2/3 leaves a third of the life for retries.
 */
export function renewalDelay(login: LoginFacts, now = Date.now()): number {
  const obtained = Date.parse(login.obtainedAt);
  const expires = Date.parse(login.expiresAt);
  const at = Math.min(obtained + ((expires - obtained) * 2) / 3, expires - MARGIN_MS);
  return Math.max(0, at - now);
}

export function keepTokenFresh(options: KeeperOptions): TokenKeeper {
  const { endpoint, file, say } = options;
  let stored = options.stored;
  const holder = { current: stored.token };
  const listeners: Array<() => void> = [];
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let failures = 0;
  let toldToLogIn = false;

  const schedule = (ms: number, step: () => Promise<void> | void) => {
    if (stopped) return;
    clearTimeout(timer);
    // unref: renewal alone never keeps the command alive; its listeners and connections do.
    // A renewal that throws (a file system surprise) is said and ends renewing; it never ends the command.
    timer = setTimeout(() => void Promise.resolve().then(step).catch((err: unknown) => say(`token renewal stopped: ${(err as Error).message}`)), ms);
    timer.unref();
  };

  const adopt = (next: StoredToken & { login: LoginFacts }, how: string) => {
    stored = next;
    holder.current = next.token;
    failures = 0;
    toldToLogIn = false;
    say(`token ${how}; valid until ${next.login.expiresAt}`);
    for (const listener of listeners) listener();
    schedule(renewalDelay(next.login), renew);
  };

  /** A token in the file that ends later than ours (another command renewed it, or the user logged in again). */
  const newerInFile = (): (StoredToken & { login: LoginFacts }) | undefined => {
    const read = readTokenFile(file);
    if (!read.ok || read.stored.login === undefined || read.stored.token === stored.token) return undefined;
    const ends = expiryOf(read.stored);
    return ends > expiryOf(stored) && ends > Date.now() ? { ...read.stored, login: read.stored.login } : undefined;
  };

  async function renew(): Promise<void> {
    const fromFile = newerInFile();
    if (fromFile) return adopt(fromFile, `renewed by another command (read from ${file})`);
    const left = expiryOf(stored) - Date.now();
    if (left <= 0) return loggedOut(`the token ended at ${stored.login.expiresAt}`);
    // Several commands share the file: one renews, the others adopt what it writes (asking twice with
    // one token could look like a replayed refresh to the issuer).
    const release = lockTokenFile(file);
    if (release === undefined) return schedule(LOCKED_RETRY_MS, renew);
    let result: Awaited<ReturnType<typeof refreshLogin>>;
    try {
      result = await refreshLogin(endpoint, stored.token);
      // The file may have gained a newer token meanwhile (a login in another terminal): keep the newest.
      if (result.ok && !stopped && !newerInFile()) saveRenewed(result.stored);
    } finally {
      release();
    }
    if (stopped) return;
    if (result.ok) return adopt(result.stored, `renewed through ${endpoint.label}`);
    if (result.refused) return loggedOut(`${endpoint.label} refused to renew the token: ${result.reason}`);
    // The gateway could not be asked (network, restart): try again while the token lasts.
    failures += 1;
    const wait = Math.min(RETRY_MAX_MS, 1_000 * 2 ** failures, Math.max(1_000, left / 4));
    say(`cannot renew the token now (${result.reason}); trying again in ${Math.round(wait / 1000)} s`);
    schedule(wait, renew);
  }

  /** Writes the renewed token; a file that cannot be written (disk full) costs the other commands it, not this one. */
  function saveRenewed(next: StoredToken): void {
    try {
      writeTokenFile(file, next);
    } catch (err) {
      say(`cannot write the renewed token to ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; this command goes on with it`);
    }
  }

  /** Refresh refused or impossible: say so once, keep the current token until it ends, and watch the file for a new login. */
  function loggedOut(why: string): void {
    if (!toldToLogIn) say(`${why}; log in again: gatehouse login (the current token works until ${stored.login.expiresAt})`);
    toldToLogIn = true;
    schedule(REREAD_MS, watchFile);
  }

  function watchFile(): void {
    const fromFile = newerInFile();
    if (fromFile) adopt(fromFile, `replaced by a new login (read from ${file})`);
    else schedule(REREAD_MS, watchFile);
  }

  schedule(renewalDelay(stored.login), renew);
  return {
    holder,
    onRenewed: (listener) => void listeners.push(listener),
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** The keeper for a command's settings: only a token `gatehouse login` stored in a file is renewed (never GATEHOUSE_TOKEN or a minted one). */
export function renewalFor(settings: ClientSettings, say: (line: string) => void): TokenKeeper | undefined {
  if (settings.tokenFile === undefined || settings.login === undefined) return undefined;
  return keepTokenFresh({ endpoint: endpointOf(settings), file: settings.tokenFile, stored: { token: settings.token, login: settings.login }, say });
}
