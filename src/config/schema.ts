// The routes.yaml schema: every key the gateway reads, its type and its default.
// Validation only; paths stay as written here and are resolved against the config file by loadConfig.
import { isIP } from 'node:net';
import { z } from 'zod';
import { clusterSettingsSchema } from './clusterSettings.ts';
import { issuerSettingsSchema } from './issuerSettings.ts';
import { browserSettingsSchema } from './browserSettings.ts';
import { DEFAULT_MAX_STREAM_WINDOW, MAX_STREAM_WINDOW, MIN_STREAM_WINDOW } from './publishWindowBounds.ts';

/** `10.0.0.0/8`, `2001:db8::/32`, or one address. */
function isCidr(text: string): boolean {
  const [address = '', bits, extra] = text.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}

/** A route template parameter name, as in `{user}`. */
const paramName = /^[a-z][a-z0-9_]*$/;

const listenAddress = z
  .object({
    /** `host:port` or `[v6]:port`. */
    tcp: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port').optional(),
    /** Path of a UNIX socket the gateway creates (an existing stale socket is replaced). */
    unix: z.string().min(1).optional(),
    /** Mode of the UNIX socket file, octal string such as "0660". */
    mode: z.string().regex(/^0?[0-7]{3}$/, 'expected an octal mode such as "0660"').optional(),
    /** Expect a PROXY protocol (v1 or v2) header from these balancers only; every other peer is refused. */
    proxyProtocol: z.object({ trusted: z.array(z.string().refine(isCidr, 'expected an IP address or CIDR such as 10.0.0.0/8')).min(1) }).strict().optional(),
  })
  .strict()
  .refine((l) => (l.tcp === undefined) !== (l.unix === undefined), {
    message: 'each listen entry needs exactly one of tcp or unix',
  })
  .refine((l) => l.proxyProtocol === undefined || l.tcp !== undefined, {
    message: 'proxyProtocol applies to tcp listeners only',
    path: ['proxyProtocol'],
  });

const tlsSchema = z
  .object({
    cert: z.string().min(1),
    key: z.string().min(1),
    /** CA bundle that client certificates must chain to. */
    clientCa: z.string().min(1),
    /** Client-certificate revocation lists (PEM, one or more, or one DER), one per client CA; re-read when the file changes. */
    crl: z.string().min(1).optional(),
    /** Session-ticket key shared by every instance (48 bytes), so a session resumes on any of them; re-read on SIGHUP. */
    ticketKeys: z.string().min(1).optional(),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  })
  .strict();

const limitsSchema = z
  .object({
    maxFacts: z.number().int().positive().default(1000),
    maxIterations: z.number().int().positive().default(100),
    maxTimeMicros: z.number().int().positive().default(10_000),
    /** Hard wall-clock deadline for one authorization, enforced outside the engine (default 100 ms). */
    deadlineMs: z.number().int().positive().max(60_000).optional(),
  })
  .strict();

/** A route's own limits: only the keys written override the gateway's (authz.limits). */
const routeLimitsSchema = z
  .object({
    maxFacts: z.number().int().positive().optional(),
    maxIterations: z.number().int().positive().optional(),
    maxTimeMicros: z.number().int().positive().optional(),
    deadlineMs: z.number().int().positive().max(60_000).optional(),
  })
  .strict();

const authzSchema = z
  .object({
    /** File holding the root public key as `ed25519/<hex>` (the output of `gatehouse token keygen`). */
    rootKey: z.string().min(1),
    /** File with one revoked revocation id (hex) per line; `#` comments allowed. Unreadable -> deny all. */
    revocationList: z.string().min(1).optional(),
    limits: limitsSchema.prefault({}),
    /** Third-party block signers by name, `ed25519/<hex>`; route policies trust them with `trusting {name}`. */
    externalKeys: z.record(z.string().regex(paramName, 'key names are lower case letters, digits and _'), z.string().regex(/^(ed25519|secp256r1)\/[0-9a-fA-F]+$/, 'expected ed25519/<hex>')).default({}),
    /**
     * Issuers whose tokens the gateway accepts besides the root key's, by name (policies see `signer("name")`;
     * root-key tokens are `signer("root")`): tokens carrying `keyId` as their root key id must verify against `publicKey`.
     */
    issuers: z
      .record(
        z.string(),
        z.object({ keyId: z.number().int().min(0).max(0xffff_ffff), publicKey: z.string().regex(/^(ed25519|secp256r1)\/[0-9a-fA-F]+$/, 'expected ed25519/<hex> (gatehouse token keygen --issuer prints it)') }).strict(),
      )
      .default({})
      .superRefine((issuers, ctx) => {
        const ids = new Map<number, string>();
        for (const [name, issuer] of Object.entries(issuers)) {
          if (!paramName.test(name)) ctx.addIssue({ code: 'custom', path: [name], message: 'issuer names are lower case letters, digits and _' });
          if (name === 'root') ctx.addIssue({ code: 'custom', path: [name], message: '"root" names the root key (signer("root")): choose another name' });
          const other = ids.get(issuer.keyId);
          if (other !== undefined) ctx.addIssue({ code: 'custom', path: [name, 'keyId'], message: `issuer ${other} has key id ${issuer.keyId} already: each issuer needs its own` });
          ids.set(issuer.keyId, name);
        }
      }),
    /** Worker threads that run biscuit-wasm, replaced when their WebAssembly memory grows past a bound. */
    workers: z
      .object({
        count: z.number().int().min(1).max(32).default(2),
        recycleAfterMB: z.number().int().min(8).max(4096).default(24),
        recycleAfterAuthorizations: z.number().int().positive().optional(),
        /** Authorizations of one client certificate that may wait for a worker; more are refused (429). */
        queuePerIdentity: z.number().int().min(1).max(10_000).default(64),
      })
      .strict()
      .prefault({}),
    /** Verified-token and decision caches; 0 disables one. */
    cache: z
      .object({
        tokens: z.number().int().min(0).default(10_000),
        decisions: z.number().int().min(0).default(10_000),
        decisionTtlMs: z.number().int().min(0).max(60_000).default(1000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const metricsSchema = z
  .object({
    /** Plain-HTTP listener for Prometheus (`GET /metrics`), `host:port`; keep it on loopback. */
    listen: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port'),
  })
  .strict();

const auditSchema = z
  .object({
    /** JSON-lines audit file, appended to. */
    file: z.string().min(1),
    /** Also write every record to standard output. */
    stdout: z.boolean().default(false),
    /** ed25519 private key (PKCS#8 PEM, `gatehouse audit keygen`) that signs checkpoints. */
    signingKey: z.string().min(1).optional(),
    /**
     * The log's name in its checkpoints (the C2SP origin line, also the signature's key name), unique
     * per instance, e.g. `gateway.example.org/audit`. Default: `<hostname>/gatehouse<absolute file path>`.
     */
    origin: z.string().regex(/^[^\s+]+$/, 'no whitespace and no "+" (a signed-note key name)').max(200).optional(),
    /** The latest checkpoint note, replaced atomically (default: beside the file, `audit.log` -> `audit.checkpoint`). */
    checkpointFile: z.string().min(1).optional(),
    /** Ship every record to a syslog receiver (RFC 5424 over TCP, optionally TLS). */
    syslog: z
      .object({
        tcp: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port'),
        tls: z.object({ ca: z.string().min(1), cert: z.string().min(1).optional(), key: z.string().min(1).optional(), servername: z.string().min(1).optional() }).strict().optional(),
        facility: z.enum(['kern', 'user', 'daemon', 'auth', 'syslog', 'authpriv', 'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6', 'local7']).default('authpriv'),
        appName: z.string().regex(/^[!-~]{1,48}$/, 'printable ASCII, no spaces, at most 48 characters').default('gatehouse'),
      })
      .strict()
      .optional(),
    /** Witnesses (`gatehouse audit witness`) each checkpoint is pushed to, with a consistency proof, for their cosignature. */
    witnesses: z
      .array(
        z
          .object({
            url: z.string().regex(/^https:\/\/\S+$/, 'an https:// URL (the witness submission prefix)'),
            /** The witness's name and verifier key, as `gatehouse audit witness --vkey` prints them. */
            name: z.string().regex(/^[^\s+]+$/, 'no whitespace and no "+"'),
            vkey: z.string().regex(/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$/, 'a witness verifier key: name+keyid+base64 key (gatehouse audit witness --vkey)'),
            /** CA of the witness's server certificate, and the gateway's client certificate and key for it (PEM files). */
            ca: z.string().min(1).optional(),
            cert: z.string().min(1).optional(),
            key: z.string().min(1).optional(),
          })
          .strict()
          .refine((w) => w.vkey.startsWith(`${w.name}+`), 'the vkey must name this witness')
          .refine((w) => (w.cert === undefined) === (w.key === undefined), 'cert and key go together'),
      )
      .default([]),
    /** Not ready (/readyz) when no witness has cosigned a checkpoint for this long (needs witnesses). */
    witnessMaxAgeSeconds: z.number().min(1).max(86_400 * 7).optional(),
    /** A signed checkpoint after this many records or seconds, whichever comes first (and at reopen and shutdown). */
    checkpoint: z
      .object({
        records: z.number().int().min(1).max(1_000_000).default(1000),
        seconds: z.number().min(1).max(86_400).default(60),
      })
      .strict()
      .default({ records: 1000, seconds: 60 }),
    /** Largest audit line in bytes: longer values are cut with `…[cut <n> bytes sha256:<hex>]`, so one record never exceeds it. */
    maxRecordBytes: z.number().int().min(4096).max(1 << 20).default(16_384),
    /** Budgets for records of refused connections and requests (per client and for the whole gateway); the rest is counted in `audit.suppressed`. */
    refusalRecords: z
      .object({
        /** Length of one budget window, and how often a summary of what was left out is written. */
        windowSeconds: z.number().int().min(1).max(3600).default(10),
        /** Records per window for one source address without a certificate (tls.reject, connection.reject). */
        perSource: z.number().int().min(1).max(100_000).default(10),
        /** Records per window for one client certificate (4xx refusals of its requests; 429s count against `perSource`'s number). */
        perIdentity: z.number().int().min(1).max(100_000).default(200),
        /** Records per window for all clients without a certificate together. */
        anonymous: z.number().int().min(1).max(1_000_000).default(100),
        /** Records per window for all refusals of clients with a certificate together. */
        identified: z.number().int().min(1).max(1_000_000).default(1000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/**
 * What one client, one source address or the whole gateway may hold or send. Every limit refuses with
 * a short reason, a rate-limited audit record and a metric; defaults are safe for one 2-core host.
 */
const udpLimitsSchema = z
  .object({
    /** UDP flows one identity (token user) may hold open at once; past it: 429. */
    flowsPerIdentity: z.number().int().positive().max(100_000).default(64),
    /** Datagrams per second one flow may send each way (token bucket, burst of one second); past it the datagram is dropped. */
    packetsPerSecondPerFlow: z.number().positive().max(10_000_000).default(20_000),
    /** Datagrams per second all flows of one identity may send each way together; past it the datagram is dropped. */
    packetsPerSecondPerIdentity: z.number().positive().max(10_000_000).default(50_000),
    /** Largest UDP payload carried (bytes); a larger datagram is dropped and counted. 1,472 fills a 1,500-byte Ethernet frame. */
    maxDatagramBytes: z.number().int().min(64).max(65_507).default(1472),
    /** Datagrams a flow may have waiting each way (not yet handed to the kernel or the client's connection); past it: dropped. */
    queuePackets: z.number().int().positive().max(100_000).default(256),
  })
  .strict();

const gatewayLimitsSchema = z
  .object({
    /** Open client connections (TLS or not yet), all sources together. */
    connections: z.number().int().positive().max(1_000_000).default(4096),
    /** Open client connections from one source IP address (UNIX-socket clients count as one source). */
    connectionsPerSource: z.number().int().positive().max(1_000_000).default(256),
    /** Concurrent tunnels and proxied WebSockets of one identity (token user; certificate when no token). */
    tunnelsPerIdentity: z.number().int().positive().max(100_000).default(64),
    /** Sustained requests per second of one client certificate (token bucket); past it: 429 + Retry-After. */
    requestsPerSecond: z.number().positive().max(1_000_000).default(100),
    /** Requests one client certificate may send at once above the sustained rate (the bucket's size). */
    requestBurst: z.number().int().positive().max(1_000_000).default(200),
    /** Authorization engine time (CPU ms per second) one client certificate may use; past it: 429 + Retry-After. */
    engineMsPerSecond: z.number().positive().max(1_000_000).default(250),
    /** Engine time (ms) one client certificate may use at once above the sustained rate (the bucket's size). */
    engineBurstMs: z.number().positive().max(1_000_000).default(1000),
    /** Request line plus headers, in bytes (431 past it). */
    maxHeaderBytes: z.number().int().min(1024).max(1 << 20).default(16_384),
    /** A bearer token's length in characters (401 past it, before any parsing). */
    maxTokenBytes: z.number().int().min(256).max(1 << 20).default(8192),
    /** A client that has not finished the TLS handshake by then is disconnected. */
    handshakeTimeoutSeconds: z.number().positive().max(300).default(10),
    /** A request whose headers have not all arrived by then gets 408 and is disconnected. */
    headersTimeoutSeconds: z.number().positive().max(600).default(20),
    /** A request (headers and body) that has not fully arrived by then gets 408 and is disconnected; 0 = never. */
    requestTimeoutSeconds: z.number().nonnegative().max(86_400).default(300),
    /** A keep-alive connection with no request in flight is closed after this long. */
    idleTimeoutSeconds: z.number().positive().max(3600).default(30),
    /** UDP flows (`protocols: [udp]` routes): how many, how fast, how large (see forward/udpLimits.ts). */
    udp: udpLimitsSchema.prefault({}),
  })
  .strict();

const protocol = z.enum(['http', 'websocket', 'tcp', 'udp']);

const routeSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'route names are letters, digits, _ . -'),
    /** Host name the request must carry (Host header, without port); absent or "*" = any host. */
    host: z.string().min(1).optional(),
    /** Path prefix, optionally with `{param}` segments, e.g. `/~{user}/{service}/`. */
    path: z.string().startsWith('/', 'paths start with /').default('/'),
    protocols: z.array(protocol).min(1).default(['http']),
    /**
     * `unix:/path/{param}.sock`, `tcp:host:port`, or `published:{user}/{service}` (a service a user publishes with `gatehouse publish`);
     * `udp:host:port` or `unixgram:/path` (a datagram UNIX socket) for `protocols: [udp]` routes.
     */
    upstream: z.string().regex(/^(unix:.+|tcp:.+:\d{1,5}|udp:.+:\d{1,5}|unixgram:.+|published:[^/]+\/[^/]+)$/, 'expected unix:/path, tcp:host:port, udp:host:port, unixgram:/path or published:USER/SERVICE'),
    /** tcp and udp routes: the tunnel (or flow) name template, e.g. `{service}.{user}` (CONNECT target / tunnel endpoint name); without it the route's name. */
    tunnel: z.string().regex(/^[A-Za-z0-9_.{}-]+$/, 'tunnel names are letters, digits, _ . - and {param} captures').optional(),
    /** Name of a path (or tunnel) parameter holding a user name; the UNIX socket must be owned by that user. */
    socketOwner: z.string().regex(paramName).optional(),
    /**
     * unixgram: routes: who may send to a flow's socket, so whose service can reply. `gateway-user` (default): the
     * gateway's user and root only. `any-local-user`: any local user can find it (/proc/net/unix) and send to it.
     */
    unixgramReplies: z.enum(['gateway-user', 'any-local-user']).optional(),
    /** Remove the matched prefix before forwarding (default true). */
    stripPrefix: z.boolean().default(true),
    /** Forward the client's Authorization header to the upstream (default false). */
    forwardToken: z.boolean().default(false),
    /** Datalog: checks and allow/deny policies added to the authorizer for this route. */
    policy: z.string().min(1),
    limits: routeLimitsSchema.optional(),
    /** websocket and tcp routes: close a tunnel after this many seconds with no byte either way; 0 = never (default 3600). udp routes: a flow with no datagram either way (default 120). */
    idleTimeoutSeconds: z.number().nonnegative().max(604_800).optional(),
    /** websocket and tcp routes: give up reaching the upstream (connect, and for WebSocket its 101) after this long (default 10). */
    connectTimeoutSeconds: z.number().positive().max(300).optional(),
  })
  .strict();

/** `gatehouse publish`: who may publish services (under their token's user name) and how many. */
const publishSchema = z
  .object({
    /** Datalog run for each service a publisher registers; facts: the token's, the certificate's, service(name), source_ip. */
    policy: z.string().min(1),
    /** Services one user may have published at once, over all their publishers. */
    servicesPerUser: z.number().int().positive().max(10_000).default(16),
    /** Publisher connections one user may hold at once. */
    publishersPerUser: z.number().int().positive().max(10_000).default(8),
    /** Streams (requests, tunnels) open at once through one publisher. */
    streamsPerPublisher: z.number().int().positive().max(100_000).default(1024),
    /**
     * Largest receive window (bytes) of one stream from a publisher: windows grow with the measured
     * bandwidth-delay product up to this, and one reader that stops reading leaves at most this unread here.
     */
    window: z.number().int().min(MIN_STREAM_WINDOW).max(MAX_STREAM_WINDOW).default(DEFAULT_MAX_STREAM_WINDOW),
  })
  .strict();

export const configSchema = z
  .object({
    listen: z.array(listenAddress).min(1),
    tls: tlsSchema,
    authz: authzSchema,
    audit: auditSchema,
    routes: z.array(routeSchema).min(1),
    metrics: metricsSchema.optional(),
    limits: gatewayLimitsSchema.prefault({}),
    browser: browserSettingsSchema.optional(),
    /** Absent: nobody may publish (published: routes answer 503). */
    publish: publishSchema.optional(),
    /** Self-service tokens after an OpenID login (issue 21): signing key, provider, claim rules. */
    issuer: issuerSettingsSchema.optional(),
    /** Absent: a single machine, state in files. Present: instances share membership and revocations in PostgreSQL. */
    cluster: clusterSettingsSchema.optional(),
  })
  .strict();

export type PublishConfig = z.infer<typeof publishSchema>;
export type GatewayConfig = z.infer<typeof configSchema>;
export type RouteConfig = z.infer<typeof routeSchema>;
export type ListenAddress = z.infer<typeof listenAddress>;
export type RunLimits = z.infer<typeof limitsSchema>;
export type Protocol = z.infer<typeof protocol>;
export type AuthzConfig = z.infer<typeof authzSchema>;
export type GatewayLimits = z.infer<typeof gatewayLimitsSchema>;
export type UdpLimits = z.infer<typeof udpLimitsSchema>;
