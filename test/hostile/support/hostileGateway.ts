// The gateway the hostile-input suite attacks: one real `gatehouse serve` per test file, routes that
// share one recording upstream, certificates and tokens for three users, raw send + audit helpers.
import { join } from 'node:path';
import type { AuditRecord } from '../../../src/audit/auditRecord.ts';
import { inOneHour, mintRaw, startHarness, type Harness } from '../../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../../support/pki.ts';
import { RawConnection, rawExchange, type ExchangeOptions, type RawClientTarget, type RawExchange } from './rawClient.ts';
import { startUpstreamRecorder, type UpstreamRecorder } from './upstreamRecorder.ts';

export type UserName = 'alice' | 'bob' | 'admin';
/** A client connection as the audit log knows it: its local port, and when it was opened if known. */
export type ConnectionRef = { localPort: number; startedAt?: number };
export type AuditEntry = AuditRecord & { time: string };

/**
 * Routes (all HTTP ones keep their prefix, so the upstream sees the path the client sent):
 * - `web`    /web/     any user                      -> recorder (run/recorder.sock)
 * - `secret` /secret/  user "admin" only             -> the same recorder
 * - `fwd`    /fwd/     any user, forwardToken: true  -> the same recorder
 * - `ws`     /ws/      any user, http + websocket    -> the same recorder
 * - `users`  /~{user}/{service}/  param user = token user -> run/users/{user}/{service}.sock
 *            (a recorder is at run/users/alice/app.sock: `userRecorder`)
 * - `hop`    /hop/     any user                      -> `hopUpstream` (run/hop.sock), set its answer with respondWith
 * - `tcp`    CONNECT tcp:443 / tunnel endpoint, any user -> `tcpUpstream` (run/tcp.sock, records and echoes)
 */
export const hostileRoutes = `  - name: web
    path: /web/
    stripPrefix: false
    upstream: unix:run/recorder.sock
    policy: |
      allow if user($u);
  - name: secret
    path: /secret/
    stripPrefix: false
    upstream: unix:run/recorder.sock
    policy: |
      allow if user("admin");
  - name: fwd
    path: /fwd/
    stripPrefix: false
    forwardToken: true
    upstream: unix:run/recorder.sock
    policy: |
      allow if user($u);
  - name: ws
    path: /ws/
    stripPrefix: false
    protocols: [http, websocket]
    upstream: unix:run/recorder.sock
    policy: |
      allow if user($u);
  - name: users
    path: /~{user}/{service}/
    upstream: unix:run/users/{user}/{service}.sock
    policy: |
      allow if user($u), param("user", $u);
  - name: hop
    path: /hop/
    stripPrefix: false
    upstream: unix:run/hop.sock
    policy: |
      allow if user($u);
  - name: tcp
    protocols: [tcp]
    upstream: unix:run/tcp.sock
    policy: |
      allow if user($u), protocol("tcp");
`;

export interface HostileGateway {
  h: Harness;
  certs: Record<UserName, TestClientCertificate>;
  tokens: Record<UserName, string>;
  /** Upstream of web, secret, fwd and ws. */
  recorder: UpstreamRecorder;
  /** Upstream of /~alice/app/. */
  userRecorder: UpstreamRecorder;
  /** Upstream of /hop/: answers whatever respondWith() says. */
  hopUpstream: UpstreamRecorder;
  /** Upstream of the tcp route (raw: records and echoes). */
  tcpUpstream: UpstreamRecorder;
  /** Where a raw client connects as `user`. */
  target(user?: UserName): RawClientTarget;
  /** Mints a token for `user` with extra Datalog in the authority block. */
  mint(user: string, extra?: string): string;
  /** `Authorization: Bearer <token of user>` header line (with CRLF). */
  auth(user?: UserName): string;
  /** Sends raw bytes on a fresh connection as `user` and collects the answer. */
  send(bytes: string | Buffer, opts?: ExchangeOptions & { as?: UserName }): Promise<RawExchange>;
  /** Opens a connection as `user` for step-by-step exchanges. */
  open(user?: UserName): RawConnection;
  /** `request` audit records of the connection behind `x` (by its source port, in request order), waiting up to `waitMs` for `n`. */
  auditOf(x: ConnectionRef, n?: number, waitMs?: number): Promise<AuditEntry[]>;
  /** All audit records of the connection behind `x` (any event). */
  allAuditOf(x: ConnectionRef): AuditEntry[];
  /** Resets every recorder (call at the start of each case). */
  resetUpstreams(): void;
  stop(): Promise<void>;
}

export interface HostileGatewayOptions {
  /** Top-level YAML for routes.yaml, e.g. a `limits:` block. */
  extraTop?: string;
  /** More routes (YAML list items indented by 2). */
  extraRoutes?: string;
  /** More arguments to `gatehouse serve`, e.g. `['--processes', '2']`. */
  serveArgs?: string[];
}

export async function startHostileGateway(opts: HostileGatewayOptions = {}): Promise<HostileGateway> {
  const h = await startHarness({ routes: hostileRoutes + (opts.extraRoutes ?? ''), ...(opts.extraTop === undefined ? {} : { extraTop: opts.extraTop }), ...(opts.serveArgs === undefined ? {} : { serveArgs: opts.serveArgs }) });
  const run = join(h.dir, 'run');
  const recorder = await startUpstreamRecorder(join(run, 'recorder.sock'));
  const userRecorder = await startUpstreamRecorder(join(run, 'users', 'alice', 'app.sock'));
  const hopUpstream = await startUpstreamRecorder(join(run, 'hop.sock'));
  const tcpUpstream = await startUpstreamRecorder(join(run, 'tcp.sock'), { mode: 'raw' });
  const certs = { alice: await h.pki.client('alice'), bob: await h.pki.client('bob'), admin: await h.pki.client('admin') };
  const mint = (user: string, extra = '') => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()}; ${extra}`);
  const tokens = { alice: mint('alice', 'group("staff");'), bob: mint('bob'), admin: mint('admin') };
  const target = (user: UserName = 'alice'): RawClientTarget => ({ port: h.port, ca: h.pki.caCert, cert: certs[user].cert, key: certs[user].key });
  const source = (x: ConnectionRef) => `127.0.0.1:${x.localPort}`;
  // Ports are reused: when the exchange says when it started, keep only records of the connection
  // opened from that port since then (by its connection id), so an earlier connection never counts.
  const allAuditOf = (x: ConnectionRef) => {
    const fromPort = h.audit().filter((r) => r.source === source(x) && (x.startedAt === undefined || Date.parse(r.time) >= x.startedAt - 5));
    const conn = fromPort.find((r) => r.event === 'connection.open')?.conn;
    return conn === undefined ? fromPort : fromPort.filter((r) => r.conn === undefined || r.conn === conn);
  };
  // Records are written when a request ends, so a pipelined deny can precede an earlier allow: order by request id.
  const reqSeq = (r: AuditEntry) => Number(/\.(\d+)$/.exec(r.req ?? '')?.[1] ?? 0);
  const requestsOf = (x: ConnectionRef) => allAuditOf(x).filter((r) => r.event === 'request').sort((a, b) => reqSeq(a) - reqSeq(b));
  return {
    h,
    certs,
    tokens,
    recorder,
    userRecorder,
    hopUpstream,
    tcpUpstream,
    target,
    mint,
    auth: (user: UserName = 'alice') => `Authorization: Bearer ${tokens[user]}\r\n`,
    send: (bytes, o = {}) => rawExchange(target(o.as), bytes, o),
    open: (user = 'alice') => new RawConnection(target(user)),
    async auditOf(x, n = 1, waitMs = 3000) {
      const until = Date.now() + waitMs;
      while (requestsOf(x).length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      return requestsOf(x);
    },
    allAuditOf,
    resetUpstreams() {
      for (const r of [recorder, userRecorder, hopUpstream, tcpUpstream]) r.reset();
      hopUpstream.respondWith(undefined);
    },
    async stop() {
      await Promise.all([recorder.close(), userRecorder.close(), hopUpstream.close(), tcpUpstream.close()]);
      await h.stop();
    },
  };
}
