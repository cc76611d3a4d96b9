// Device logins waiting for the user's approval, by an unguessable handle, each bound to the certificate that
// started it: bounded in all (least recently used dropped) and per certificate (its own oldest dropped).
import { createHash, randomBytes } from 'node:crypto';
import type { IssueRequest } from '../issuer/claimGrant.ts';
import type { DeviceLogin } from '../issuer/relyingParty.ts';

export interface PendingDevice {
  /** 256 random bits, base64url: the only name of the login the client holds. */
  readonly handle: string;
  /** What records name the login by: a digest of the handle (records never carry the handle nor the user code). */
  readonly ref: string;
  /** `sha256:<hex>` of the certificate that started it: no other certificate may poll it. */
  readonly fingerprint: string;
  readonly device: DeviceLogin;
  readonly request: IssueRequest;
  readonly delegationKey?: string;
  /** ms since the epoch: the provider's device code ends then. */
  readonly expiresAt: number;
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
}

export interface PendingLimits {
  maxPending: number;
  maxPendingPerCertificate: number;
}

export interface PendingStart {
  fingerprint: string;
  device: DeviceLogin;
  request: IssueRequest;
  delegationKey?: string;
  now: number;
}

export interface PendingDevices {
  /** Keeps a new login; `dropped` names the handles it pushed out (the certificate's oldest, or the least recently used). */
  add(start: PendingStart): { pending: PendingDevice; dropped: string[] };
  /** The login `handle` names, only for the certificate that started it. */
  get(handle: string, fingerprint: string): PendingDevice | undefined;
  delete(handle: string): void;
  readonly size: number;
}

/** RFC 8628 §3.2: the default poll interval when the provider names none. */
const DEFAULT_INTERVAL_SECONDS = 5;

export function pendingDevices(limits: () => PendingLimits): PendingDevices {
  // Map order is use order: get() moves an entry to the end, so the first one is the least recently used.
  const byHandle = new Map<string, PendingDevice>();

  const dropExpired = (now: number): string[] => {
    const dropped: string[] = [];
    for (const [handle, entry] of byHandle) if (entry.expiresAt <= now) dropped.push(handle);
    for (const handle of dropped) byHandle.delete(handle);
    return dropped;
  };

  return {
    add(start) {
      const { maxPending, maxPendingPerCertificate } = limits();
      const dropped = byHandle.size >= maxPending ? dropExpired(start.now) : [];
      const own = [...byHandle.values()].filter((e) => e.fingerprint === start.fingerprint);
      for (const old of own.slice(0, Math.max(0, own.length - maxPendingPerCertificate + 1))) {
        byHandle.delete(old.handle);
        dropped.push(old.handle);
      }
      while (byHandle.size >= maxPending) {
        const [oldest] = byHandle.keys();
        if (oldest === undefined) break;
        byHandle.delete(oldest);
        dropped.push(oldest);
      }
      const interval = start.device.response.interval ?? DEFAULT_INTERVAL_SECONDS;
      const handle = randomBytes(32).toString('base64url');
      const pending: PendingDevice = {
        handle,
        ref: createHash('sha256').update(handle).digest('hex').slice(0, 16),
        fingerprint: start.fingerprint,
        device: start.device,
        request: start.request,
        ...(start.delegationKey !== undefined && { delegationKey: start.delegationKey }),
        expiresAt: start.now + start.device.expiresIn * 1000,
        clientInterval: interval,
        providerInterval: interval,
        // The user needs the first interval to even read the code: the provider is asked after it.
        nextProviderPoll: start.now + interval * 1000,
        asking: false,
      };
      byHandle.set(pending.handle, pending);
      return { pending, dropped };
    },
    get(handle, fingerprint) {
      const entry = byHandle.get(handle);
      if (entry === undefined || entry.fingerprint !== fingerprint) return undefined;
      byHandle.delete(handle);
      byHandle.set(handle, entry);
      return entry;
    },
    delete(handle) {
      byHandle.delete(handle);
    },
    get size() {
      return byHandle.size;
    },
  };
}
