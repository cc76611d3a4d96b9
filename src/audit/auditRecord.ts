// The audit record: one JSON line per event. This shape is a public contract (docs/reference/audit-records.md);
// add fields freely, never rename or repurpose one.
import { hasCertificate, type PeerIdentity } from '../tls/peerIdentity.ts';

export type AuditEvent =
  | 'gateway.start'
  | 'gateway.stop'
  | 'config.reload'
  | 'revocation.reload'
  | 'tls.reject'
  | 'connection.reject'
  | 'connection.open'
  | 'connection.close'
  | 'request'
  | 'tunnel.open'
  | 'tunnel.close'
  /** A stream relayed here by another instance of the cluster, as this (carrying) instance carried it. */
  | 'relay.close'
  /** A UDP flow admitted and its upstream socket open; `udp.close` ends it with its counts (forward/udpFlow.ts). */
  | 'udp.open'
  | 'udp.close'
  | 'session.start'
  | 'session.end'
  | 'publish.open'
  | 'publish.close'
  /** A token issued (or refused) after an OpenID login (src/issuer/issueRecord.ts). */
  | 'token.issue'
  /** Refusal records left out by their budgets in the last period, counted (refusalRecords.ts). */
  | 'audit.suppressed'
  /** A signed statement of the chain's head (auditCheckpoint.ts); written by the audit log itself. */
  | 'audit.checkpoint'
  /** The first record of a log started on purpose after another (auditLogStart.ts): what came before. */
  | 'audit.log.new'
  /** The cluster database reached, lost, or not heard from for cluster.staleSeconds (clusterNode.ts). */
  | 'cluster.database'
  /** This log's checkpoint disagrees with what the cluster database recorded for its origin (checkpointRecorder.ts). */
  | 'cluster.checkpoint';

/** Datagrams a UDP flow dropped, each way (`in`: client to upstream), by cause; only non-zero counts are written. */
export interface UdpDrops {
  /** Larger than `limits.udp.maxDatagramBytes`. */
  oversizeIn?: number;
  oversizeOut?: number;
  /** The flow's queue was full (the receiver was slower than the sender). */
  queueFullIn?: number;
  queueFullOut?: number;
  /** Above the flow's or the identity's packets per second. */
  rateIn?: number;
  rateOut?: number;
  /** unixgram: upstreams: datagrams on the flow's socket from another path than the target's. */
  strangerOut?: number;
}

export interface AuditClient {
  cn: string;
  subject: string;
  issuer: string;
  serial: string;
  fingerprint: string;
}

export interface AuditToken {
  user?: string;
  groups?: string[];
  revocationIds?: string[];
  /** Tokens with more than one block: each block's role, signer and bound certificate (docs/reference/audit-records.md). */
  blocks?: AuditTokenBlock[];
  /** Tokens signed by a trusted issuer (absent: the root key): the issuer's name. */
  signer?: string;
  /** Tokens an issuer minted after an IdP login (and loans from them): the IdP issuer and subject of that login. */
  idp?: { issuer: string; subject: string };
}

export interface AuditTokenBlock {
  index: number;
  role: 'authority' | 'attenuation' | 'third-party';
  revocationId: string;
  /** Third-party blocks: the `authz.externalKeys` name of the signer, else its public key. */
  signer?: string;
  /** Signed by the delegation key the authority block names: the token's user lent it. */
  delegation?: true;
  boundTo?: { fingerprint?: string; cn?: string };
}

export interface AuditRecord {
  event: AuditEvent;
  /** Connection id, shared by every record of one client connection. */
  conn?: string;
  /** Request id within the connection: `<conn>.<n>`. */
  req?: string;
  /** Client address as `ip:port` (or `unix` for a UNIX-socket listener). */
  source?: string;
  client?: AuditClient;
  token?: AuditToken;
  /** How the request was authenticated: `Authorization: Bearer` or the browser session cookie. */
  auth?: 'bearer' | 'session';
  route?: string;
  upstream?: string;
  /** The publisher connection (its `conn` id) a request or tunnel to a published service went through. */
  publisher?: string;
  /**
   * A request or tunnel relayed between the instances of a cluster: `id` is the correlation id both
   * instances record; `to` names the carrying instance (on the entry's record), `from` the entry instance
   * (on the carrier's record, whose `client` and `source` are the original client's, as the entry decided).
   */
  relay?: { id: string; to?: string; from?: string };
  protocol?: 'http' | 'websocket' | 'tcp' | 'udp';
  method?: string;
  /** Normalized path: what routing and policy saw. */
  path?: string;
  /** The request target exactly as the client sent it, when it differs from `path` (query included). */
  target?: string;
  decision?: 'allow' | 'deny';
  /** Why: the failing check or policy, the routing or TLS error; for closes, who closed. */
  reason?: string;
  status?: number;
  /** Bytes from client to upstream (request body, or tunnel bytes). */
  bytesIn?: number;
  /** Bytes from upstream to client (response body, or tunnel bytes). */
  bytesOut?: number;
  durationMs?: number;
  /** UDP flows (`udp.close`): datagrams carried and dropped each way, by cause. */
  packetsIn?: number;
  packetsOut?: number;
  dropped?: UdpDrops;
  /** Free-form details for gateway events (config file, counts, errors). */
  detail?: Record<string, unknown>;
  /** Only on `audit.checkpoint` records. */
  checkpoint?: AuditCheckpoint;
  /** The gateway process that wrote the record, under `serve --processes N` (absent with one process). */
  pid?: number;
  /**
   * Present when the record was longer than `audit.maxRecordBytes` (recordBound.ts): `bytes` is the size
   * of its fields before long values were cut (each cut value says `…[cut <n> bytes sha256:<hex>]`);
   * `dropped` names the top-level fields left out when cutting values was not enough.
   */
  cut?: { bytes: number; dropped?: string[] };
}

/**
 * What a checkpoint states: "the log of `origin` with these `seq` records has this Merkle root",
 * signed with the audit signing key (its note); `hash` is the chain hash of record `seq`.
 */
export interface AuditCheckpoint {
  seq: number;
  hash: string;
  /** Records since the previous checkpoint (this process), for a reader's orientation only. */
  records: number;
  /**
   * The C2SP signed note (auditCheckpointer.ts): origin, tree size (= `seq`), base64 Merkle root, a
   * blank line and the signature lines. Exactly the text of the checkpoint file.
   */
  note?: string;
  /** The compact range of the tree at `seq` (base64 subtree roots, largest first): its root is the note's. */
  range?: string[];
  /** Version 1 checkpoints (before the Merkle tree): key id and signature over `checkpointMessage`. */
  key?: string;
  sig?: string;
}

/** The fields the audit log adds in front of every record: the line as written is `{seq, prev, time, ...record}`. */
export interface ChainFields {
  /** 1, 2, 3, ... across files and restarts. */
  seq: number;
  /** `sha256:<hex>` of the previous record's line bytes (without its newline); GENESIS_HASH for seq 1. */
  prev: string;
  time: string;
}

export type WrittenAuditRecord = ChainFields & AuditRecord;

export function auditClient(identity: PeerIdentity | undefined): AuditClient | undefined {
  // A connection without a certificate (issuer.certificates) has no client to name.
  if (!identity || !hasCertificate(identity)) return undefined;
  // One per connection's identity, shared by every record of it (records are read, never changed): an
  // object less per request on the hot path.
  let client = auditClients.get(identity);
  if (client === undefined) {
    const { cn, subject, issuer, serial, fingerprint } = identity;
    auditClients.set(identity, (client = { cn, subject, issuer, serial, fingerprint }));
  }
  return client;
}

const auditClients = new WeakMap<PeerIdentity, AuditClient>();
