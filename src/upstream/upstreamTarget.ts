// Reads a route's upstream as filled for one request (`unix:/path/alice.sock`, `tcp:host:port`, `published:alice/web`)
// and, where the route asks for it, proves the UNIX socket belongs to the user the path names.
import { execFile } from 'node:child_process';
import { lstat, realpath } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { AuditToken } from '../audit/auditRecord.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { Protocol } from '../config/schema.ts';

/**
 * Where a request goes. `via` names the connection it is reached through when that is not the gateway's
 * own (the publisher's connection id, for a published service), for the audit record.
 */
export type UpstreamTarget =
  | { kind: 'unix'; path: string; label: string; via?: string }
  | { kind: 'tcp'; host: string; port: number; label: string; via?: string }
  /** A UDP address: reached by datagrams (upstream/udpUpstream.ts), never as a stream. */
  | { kind: 'udp'; host: string; port: number; label: string; via?: string }
  /**
   * A datagram UNIX socket (upstream/unixgramUpstream.ts). `owner` is the user the route's `socketOwner` proved
   * owns it at admission: a datagram flow reaches the path anew with every send, so the flow checks it again.
   * `replies`: the route's `unixgramReplies` (who may send to the flow's socket; flowSocketDirectory.ts).
   */
  | { kind: 'unixgram'; path: string; label: string; via?: string; owner?: string; replies?: 'gateway-user' | 'any-local-user' }
  | { kind: 'published'; user: string; service: string; label: string; via?: string; relay?: RelayTicket };

/**
 * A published service carried by another instance of the cluster: the request is relayed there over the
 * peer channel. `decided` is filled once admission allowed it (who, by which route and token): the carrying
 * instance does not decide again, it records what this one decided, under the same correlation `id`.
 */
export interface RelayTicket {
  /** The correlation id both instances' records carry. */
  id: string;
  /** The instance carrying the publisher, and the publisher's connection id there. */
  instance: string;
  publisher: string;
  /** The publisher's certificate, which the policy decided on: the carrying instance uses one with it only. */
  fingerprint: string;
  decided?: RelayDecided;
}

/** What the entry instance decided, as the carrying instance records it. */
export interface RelayDecided {
  identity: PeerIdentity;
  source: string;
  route: string;
  protocol: Protocol;
  user: string;
  path?: string;
  token: AuditToken | undefined;
}

export type UpstreamCheck = { ok: true; target: UpstreamTarget } | { ok: false; reason: string };

/** Reads a route's upstream once admission has filled its `{param}` placeholders (see admitRequest's resolveUpstream). */
export function parseUpstream(filled: string): UpstreamCheck {
  const socket = /^(unix|unixgram):(.*)$/s.exec(filled);
  if (socket) {
    const [, kind, path] = socket as unknown as [string, 'unix' | 'unixgram', string];
    if (path.split('/').some((s) => s === '..' || s === '.')) return { ok: false, reason: `upstream path ${path} has dot segments` };
    return { ok: true, target: { kind, path, label: filled } };
  }
  if (filled.startsWith('published:')) {
    const [user, service, extra] = filled.slice('published:'.length).split('/');
    if (!user || !service || extra !== undefined) return { ok: false, reason: `upstream ${filled} is not published:USER/SERVICE` };
    return { ok: true, target: { kind: 'published', user, service, label: filled } };
  }
  const m = /^(tcp|udp):(\[[^\]]+\]|[^:]+):(\d+)$/.exec(filled);
  if (!m) return { ok: false, reason: `unrecognized upstream ${filled}` };
  return { ok: true, target: { kind: m[1] as 'tcp' | 'udp', host: (m[2] as string).replace(/^\[|\]$/g, ''), port: Number(m[3]), label: filled } };
}

/** POSIX portable user names (plus the `$` of machine accounts), as useradd accepts them by default. */
const USER_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

// Lookups go through NSS (`id -u`), so LDAP/SSSD users work too; cached briefly to keep them off the hot path.
const uidCache = new LRUCache<string, number | 'unknown'>({ max: 4096, ttl: 60_000 });

export function uidOf(user: string): Promise<number | undefined> {
  const cached = uidCache.get(user);
  if (cached !== undefined) return Promise.resolve(cached === 'unknown' ? undefined : cached);
  return new Promise((resolve) => {
    execFile('id', ['-u', '--', user], { timeout: 2000 }, (err, stdout) => {
      const uid = err ? undefined : Number(stdout.trim());
      const known = uid !== undefined && Number.isInteger(uid) ? uid : undefined;
      uidCache.set(user, known ?? 'unknown');
      resolve(known);
    });
  });
}

/**
 * The socket must be a real socket (a symlink is refused, even one pointing at a good socket),
 * in a directory reached without symlinks, owned by `user`'s uid. What remains is a race with the
 * owner replacing their own socket between this check and connect, which only hurts that owner.
 */
export async function verifySocketOwner(path: string, user: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  // `id -u 0` answers uid 0: a numeric "user name" would name a uid, not a user (a token for user "0"
  // would reach root's sockets). Only names a site could have created are looked up.
  if (!USER_NAME.test(user) || /^\d+$/.test(user)) return { ok: false, reason: `${JSON.stringify(user)} is not a valid user name to own ${path}` };
  const uid = await uidOf(user);
  if (uid === undefined) return { ok: false, reason: `no local user ${JSON.stringify(user)} to own ${path}` };
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    return { ok: false, reason: `upstream socket ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  if (st.isSymbolicLink()) return { ok: false, reason: `upstream socket ${path} is a symlink` };
  if (!st.isSocket()) return { ok: false, reason: `upstream ${path} is not a socket` };
  if (st.uid !== uid) return { ok: false, reason: `upstream socket ${path} is owned by uid ${st.uid}, not ${user} (uid ${uid})` };
  try {
    if ((await realpath(dirname(path))) !== dirname(path)) {
      return { ok: false, reason: `upstream socket directory ${dirname(path)} is reached through a symlink` };
    }
  } catch (err) {
    return { ok: false, reason: `upstream socket directory ${dirname(path)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  return { ok: true };
}
