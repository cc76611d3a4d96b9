// The poll state of device logins in this process, by handle (the sealed login, sealedLogin.ts): when the
// client last polled, its interval, when the IdP may be asked next. Bounded in all (least recently used
// dropped) and per certificate (its own oldest dropped); a dropped login is taken up again on its next poll.
import { createHash } from 'node:crypto';
import type { SealedLogin } from './sealedLogin.ts';

export interface PendingDevice {
  /** The sealed login the client holds: the only name of the login. */
  readonly handle: string;
  /** What records name the login by: a digest of the handle (records never carry the handle nor the user code). */
  readonly ref: string;
  readonly login: SealedLogin;
  /** Seconds the client must wait between polls; grows by 5 on each poll too fast (RFC 8628 §3.5). */
  clientInterval: number;
  /** ms since the epoch of the client's last poll. */
  lastClientPoll?: number;
  /** Seconds between the issuer's own polls of the provider (the provider's interval, grown on its slow_down). */
  providerInterval: number;
  /** ms since the epoch before which the provider is not asked again. */
  nextProviderPoll: number;
  /** A poll of the provider in flight: the first client poll asks, none other while it runs. */
  asking: boolean;
  /** Answered for good here (a token or a refusal): the handle is spent. */
  finished: boolean;
}

export interface PendingLimits {
  maxPending: number;
  maxPendingPerCertificate: number;
}

export interface PendingDevices {
  /**
   * Keeps the poll state of a login: one started here (`started`: the IdP is first asked after one interval),
   * or one another process started. `dropped` counts the states it pushed out.
   */
  keep(handle: string, login: SealedLogin, now: number, started: boolean): { pending: PendingDevice; dropped: number };
  /** The state of `handle`, only for the certificate that started the login. */
  get(handle: string, fingerprint: string): PendingDevice | undefined;
  readonly size: number;
}

export function pendingDevices(limits: () => PendingLimits): PendingDevices {
  // Map order is use order: get() moves an entry to the end, so the first one is the least recently used.
  const byHandle = new Map<string, PendingDevice>();

  const dropExpired = (now: number): number => {
    let dropped = 0;
    for (const [handle, entry] of byHandle) {
      if (entry.login.expiresAt > now) continue;
      byHandle.delete(handle);
      dropped += 1;
    }
    return dropped;
  };

  return {
    keep(handle, login, now, started) {
      const { maxPending, maxPendingPerCertificate } = limits();
      let dropped = byHandle.size >= maxPending ? dropExpired(now) : 0;
      const own = [...byHandle.values()].filter((e) => e.login.fingerprint === login.fingerprint);
      for (const old of own.slice(0, Math.max(0, own.length - maxPendingPerCertificate + 1))) {
        byHandle.delete(old.handle);
        dropped += 1;
      }
      while (byHandle.size >= maxPending) {
        const [oldest] = byHandle.keys();
        if (oldest === undefined) break;
        byHandle.delete(oldest);
        dropped += 1;
      }
      const pending: PendingDevice = {
        handle,
        ref: createHash('sha256').update(handle).digest('hex').slice(0, 16),
        login,
        clientInterval: login.interval,
        providerInterval: login.interval,
        // The user needs the first interval to even read the code: the provider is asked after it.
        nextProviderPoll: started ? now + login.interval * 1000 : now,
        asking: false,
        finished: false,
      };
      byHandle.set(handle, pending);
      return { pending, dropped };
    },
    get(handle, fingerprint) {
      const entry = byHandle.get(handle);
      if (entry === undefined || entry.login.fingerprint !== fingerprint) return undefined;
      byHandle.delete(handle);
      byHandle.set(handle, entry);
      return entry;
    },
    get size() {
      return byHandle.size;
    },
  };
}
