// The composition root: wires listener -> admission (routing + authz) -> forwarders, with audit
// observing every stage. Owns reload (new config, same sockets) and graceful shutdown.
import type { AuditLog } from '../audit/auditLog.ts';
import { openAuditLog, type AuditLogOptions } from '../audit/auditLog.ts';
import { createRefusalRecords } from '../audit/refusalRecords.ts';
import { defaultCheckpointFile } from '../audit/auditLogStart.ts';
import { startWitnessPusher } from '../audit/witnessPusher.ts';
import { witnessMetrics } from '../metrics/witnessMetrics.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { createRequestAuthorizer, type ReloadableRequestAuthorizer, type ReloadResult } from '../authz/requestAuthorizer.ts';
import { authorizerOptions } from '../authz/authorizerOptions.ts';
import { auditWithMetrics, createGatewayMetrics, type GatewayMetrics } from '../metrics/gatewayMetrics.ts';
import { startMetricsServer, type MetricsServer, type ReadinessChecks } from '../metrics/metricsServer.ts';
import { createHttpForwarder } from '../forward/httpForwarder.ts';
import { createIdentityLimits, type IdentityLimits } from '../admission/identityLimits.ts';
import type { SessionTokens } from '../authz/types.ts';
import { RouteTable } from '../routing/routeTable.ts';
import { openListener, type BoundListener } from '../listener/tlsListener.ts';
import { openTlsMaterial } from '../tls/tlsMaterial.ts';
import { createConnectionLimits } from '../listener/connectionLimits.ts';
import { admitRequest, type AdmissionContext } from '../admission/admitRequest.ts';
import { createTunnelForwarder } from '../forward/tunnelForwarder.ts';
import { createUdpForwarder } from '../forward/udpForwarder.ts';
import { flowSocketDirectory } from '../upstream/flowSocketDirectory.ts';
import { dispatchTo } from '../exchange/dispatch.ts';
import { createTunnelRegistry, type TunnelRegistry } from '../forward/tunnelSession.ts';
import { createWebSocketForwarder } from '../forward/websocketForwarder.ts';
import { createPortal } from '../portal/portalHandler.ts';
import { listenerHostNames } from '../portal/ownHosts.ts';
import type { HandoffStore } from '../portal/handoffCodes.ts';
import { createRootKeySource } from '../portal/rootKeySource.ts';
import { createPublishEndpoint } from '../forward/publishEndpoint.ts';
import { createUpstreamOpener, type UpstreamOpener } from '../upstream/openUpstream.ts';
import { createPublishedServices } from '../upstream/publishedServices.ts';
import { endExpiredConnections, endRevokedConnections } from '../listener/revokedConnections.ts';
import type { CertificateRef } from '../tls/clientCrl.ts';
import { joinCluster } from '../cluster/gatewayCluster.ts';
import { revokeShared } from '../cluster/clusterCommands.ts';
import { bearerCredential } from '../admission/bearerCredential.ts';
import { createIssuerService } from '../issuer/issuerService.ts';
import { revokeIssued } from '../issuer/revokeIssued.ts';
import { loginEndpoints } from '../login/loginEndpoints.ts';
import { loginPages } from '../login/loginPages.ts';
import type { RevocationFeed } from '../authz/policy/revocationFeed.ts';

export interface Gateway {
  readonly listeners: readonly BoundListener[];
  readonly audit: AuditLog;
  /** Swaps routes, TLS material and keys; the running config stays if anything fails. */
  reload(config: GatewayConfig, source: string): Promise<{ ok: true } | { ok: false; reason: string }>;
  /** Checkpoints and reopens the audit file by its path (SIGUSR1 and SIGHUP: after logrotate moved it). */
  reopenAudit(): void;
  /** Re-reads the revocation list (SIGHUP does this too). */
  reloadRevocations(): Promise<void>;
  /** Stops accepting, lets requests in flight finish (up to `graceMs`), then flushes the audit log. */
  close(graceMs?: number): Promise<void>;
}

async function admissionFor(config: GatewayConfig, audit: AuditLog, metrics: GatewayMetrics, tunnels: TunnelRegistry, upstreams: UpstreamOpener, identityLimits: IdentityLimits, revocationFeed?: RevocationFeed): Promise<AdmissionContext & { close(): Promise<void>; reloadRevocations(): Promise<unknown>; isRevoked(ids: readonly string[]): boolean; workers(): number; sessions: SessionTokens }> {
  // The first reload runs inside createRequestAuthorizer, before `authorizer` exists.
  let authorizer: ReloadableRequestAuthorizer | undefined;
  const onRevocationReload = (result: ReloadResult) => {
    audit.write(result.ok
      ? { event: 'revocation.reload', decision: 'allow', detail: result.source !== undefined ? { source: result.source, count: result.count, added: result.added } : { file: config.authz.revocationList, count: result.count } }
      : { event: 'revocation.reload', decision: 'deny', reason: `${result.reason}: refusing every request until the list is readable`, detail: { file: config.authz.revocationList } });
    // Tunnels are decided once, when they open: a revocation must also end the ones already open.
    const current = authorizer;
    if (result.ok && current) void tunnels.endRevoked((ids) => current.isRevoked(ids));
  };
  const engineBudget = { charge: (fingerprint: string, ms: number) => identityLimits.chargeEngine(fingerprint, ms), refusal: (fingerprint: string) => identityLimits.engineRefusal(fingerprint) };
  authorizer = await createRequestAuthorizer(authorizerOptions(config.authz, { observer: metrics.authz, onRevocationReload, engineBudget, ...(revocationFeed && { revocationFeed }) }));
  const ready = authorizer;
  return {
    routes: new RouteTable(config.routes, config.authz.limits),
    authorizer: ready,
    upstreams,
    close: () => ready.close(),
    workers: () => ready.stats().workers.length,
    reloadRevocations: () => ready.reloadRevocations(),
    isRevoked: (ids) => ready.isRevoked(ids),
    sessions: ready.sessions,
  };
}

/** While shutdown drains, keep-alive connections are closed this soon after their last exchange ends. */
const IDLE_SWEEP_MS = 200;

/** How often open connections are checked for a client certificate past its notAfter. */
const CERTIFICATE_EXPIRY_SWEEP_MS = 10_000;

/** Limits the listener applies when its sockets open; the others are read per request. */
const LISTENER_LIMITS = ['connections', 'connectionsPerSource', 'maxHeaderBytes', 'handshakeTimeoutSeconds', 'headersTimeoutSeconds', 'requestTimeoutSeconds', 'idleTimeoutSeconds'] as const;

/** What a gateway process of `serve --processes N` gets from its primary instead of opening it itself. */
export interface GatewayProcessDeps {
  /** The audit log (the primary writes the file: one chain, one writer). */
  openAudit?: (options: AuditLogOptions) => AuditLog & { reopen(): void };
  /** Sign-in hand-off codes (the primary keeps them: a code issued here may be redeemed in another process). */
  handoffs?: HandoffStore;
}

export async function startGateway(config: GatewayConfig, source: string, deps: GatewayProcessDeps = {}): Promise<Gateway> {
  // Metrics count what the audit records say, so every stage is observed without knowing about metrics.
  const metrics = createGatewayMetrics();
  // The process that writes the log pushes its checkpoints to the witnesses (in the background).
  const witnesses = !deps.openAudit && config.audit.witnesses.length > 0 ? startWitnessPusher({ auditFile: config.audit.file, checkpointFile: config.audit.checkpointFile ?? defaultCheckpointFile(config.audit.file), witnesses: config.audit.witnesses, observer: witnessMetrics(metrics.registry), ...(config.audit.witnessMaxAgeSeconds !== undefined && { heartbeatMs: (config.audit.witnessMaxAgeSeconds * 1000) / 3 }) }) : undefined;
  const witnessesSince = Date.now();
  // In a cluster the process that writes the log also records its checkpoints in the database (once joined).
  let recordCheckpoint: ((note: string) => void) | undefined;
  const writesLog = !deps.openAudit;
  const auditLog = (deps.openAudit ?? openAuditLog)({
    ...config.audit,
    ...((witnesses || (writesLog && config.cluster)) && {
      onCheckpointDurable: (note: string) => {
        witnesses?.push(note);
        recordCheckpoint?.(note);
      },
    }),
    observer: metrics.auditLog,
    onError: (err) => process.stderr.write(`gatehouse: audit log ${config.audit.file} cannot be written (${err.message}): refusing all traffic until a write succeeds (SIGUSR1 reopens the file)\n`),
    onRecovered: () => process.stderr.write(`gatehouse: audit log ${config.audit.file} written again: serving\n`),
  });
  const audit = auditWithMetrics(auditLog, metrics);
  // One set of budgets for every refusal record of this process (listeners and forwarders together).
  const refusals = createRefusalRecords(audit, config.audit.refusalRecords, metrics.refusals);
  // Tunnels (CONNECT, the WebSocket tunnel endpoint) and proxied WebSockets live until shutdown or a revocation ends them.
  const tunnels = createTunnelRegistry();
  // Services published by `gatehouse publish` outlive reloads; every forwarder reaches them through `upstreams`.
  const published = createPublishedServices(() => config.publish);
  published.registerMetrics(metrics.registry);
  const upstreams = createUpstreamOpener(published);
  // Per-identity limits outlive reloads (a reload must not hand everyone a fresh bucket); their numbers follow the config.
  const limits = () => config.limits;
  // Cluster membership and shared revocations outlive reloads (cluster: changes apply at restart).
  const cluster = await joinCluster(config, audit, metrics.registry, published);
  // In a cluster the instances hold each identity's limits together (each its share of the demand).
  const identityLimits = createIdentityLimits(limits, (limit) => metrics.limitRefused(limit), cluster?.limitShares);
  cluster?.shareLimits(identityLimits);
  if (writesLog) recordCheckpoint = cluster?.recordCheckpoint;
  let admission = await admissionFor(config, audit, metrics, tunnels, upstreams, identityLimits, cluster?.node.revocations);
  let metricsServer: MetricsServer | undefined;
  // Set once the listeners are open: until then /readyz says not ready.
  let readiness: (() => ReadinessChecks) | undefined;
  try {
    if (config.metrics) metricsServer = await startMetricsServer(config.metrics.listen, metrics.registry, () => readiness?.());
  } catch (err) {
    await admission.close();
    await cluster?.close();
    await audit.close();
    throw new Error(`metrics listener ${config.metrics?.listen}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const http = createHttpForwarder({ admission: () => admission, audit, refusals, identityLimits, limits, upstreams });
  const tunnelDeps = { admission: () => admission, audit, refusals, tunnels, identityLimits, limits, upstreams };
  const publish = createPublishEndpoint({ admission: () => admission, audit, refusals, tunnels, identityLimits, config: () => config, published });
  const tcp = createTunnelForwarder(tunnelDeps);
  const websocket = createWebSocketForwarder(tunnelDeps);
  const udp = createUdpForwarder(tunnelDeps);
  // unixgram: flows bind their sockets in this process's directory: prepared now, so a dead gateway's leftovers go at start-up.
  if (config.routes.some((r) => r.upstream.startsWith('unixgram:'))) void flowSocketDirectory().then((dir) => dir.ok || process.stderr.write(`gatehouse: ${dir.reason}\n`));
  const rootKey = createRootKeySource();
  await rootKey.load(config.authz.rootKey);
  // In a cluster the database holds the sign-in codes (any instance redeems them); else the primary or this process.
  const handoffs = cluster?.handoffs ?? deps.handoffs;
  // The issuer (issuer: in routes.yaml): logins mint tokens with its own key; logout revokes at once.
  const issuer = createIssuerService({
    settings: () => config.issuer,
    rootPublicKey: () => {
      const key = rootKey.current();
      return key.ok ? key.key.toString() : undefined;
    },
    audit,
    auditFile: () => config.audit.file,
    revoke: revokeIssued({ file: () => config.authz.revocationList, cluster: () => config.cluster, revokeShared, reload: () => admission.reloadRevocations() }),
  });
  const login = loginPages(issuer, loginEndpoints({ issuer, sessions: () => admission.sessions, limits, bearer: (headers) => bearerCredential(headers, limits().maxTokenBytes, 'authorization') }));
  const portal = createPortal({ audit, refusals, identityLimits, limits, rootKey, isRevoked: (ids) => admission.isRevoked(ids), sessions: () => admission.sessions, admission: () => admission, dryRun: admitRequest, auditFile: () => config.audit.file, browser: () => config.browser, publishedBy: (user) => published.listOf(user), listenerHosts: () => listenerHostNames(config.listen), login, ...(handoffs && { handoffs }) });
  const handlers = dispatchTo({ sinks: { audit, refusals }, http: http.wayIn, websocket: websocket.wayIn, connect: tcp.connect, tunnelEndpoint: tcp.tunnelEndpoint, publish: publish.wayIn, portal: portal.wayIn, udp: udp.wayIn, udpH2: udp.h2WayIn });
  const listeners: BoundListener[] = [];
  let tls: Awaited<ReturnType<typeof openTlsMaterial>> | undefined;
  // A new CRL is checked at each handshake; connections already open with a certificate it revokes end here.
  const openConnections = () => listeners.flatMap((l) => [...l.connections]);
  const couldNotEnd = (what: string) => (err: unknown) =>
    audit.write({ event: 'revocation.reload', decision: 'deny', reason: `could not end the connections of ${what} certificates: ${err instanceof Error ? err.message : String(err)}` });
  const endRevokedCertificates = (isRevoked: (certificate: CertificateRef) => boolean) => void endRevokedConnections(openConnections(), isRevoked, tunnels).catch(couldNotEnd('revoked'));
  try {
    tls = await openTlsMaterial(config.tls, {
      apply: (settings) => {
        listeners.forEach((l) => l.setTls(settings));
        // The peer port (cluster.peerListen) takes tls.crl as the user listener does.
        if (tls) cluster?.peersCrl(tls);
      },
      onCrlReload: (result) => {
        audit.write(result.ok
          ? { event: 'revocation.reload', decision: 'allow', detail: { crl: result.snapshot.file, lists: result.snapshot.lists.map((l) => ({ ...l, nextUpdate: l.nextUpdate?.toISOString() })) } }
          : { event: 'revocation.reload', decision: 'deny', reason: `${result.reason}: refusing every client certificate until the CRL is usable`, detail: { crl: config.tls.crl } });
        if (result.ok) endRevokedCertificates(result.snapshot.isRevoked);
      },
    });
    const connectionLimits = createConnectionLimits(config.limits, refusals, metrics);
    // Certificate logins (issuer.certificates) let a connection without a certificate finish its handshake: decided at start.
    const certificateLogins = config.issuer?.certificates !== undefined ? { certificateLogins: () => config.issuer?.certificates !== undefined } : {};
    for (const listen of config.listen) listeners.push(await openListener(listen, tls.settings(), handlers, audit, { limits: config.limits, connectionLimits, refusals, proxyRefused: metrics.proxyRefused, tlsRejected: metrics.tlsRejected, ...certificateLogins }));
    // Streams other instances relay here, to the publishers this one carries (cluster.peerListen).
    await cluster?.openPeers({ audit, refusals, admission: () => admission, isRevoked: (ids) => admission.isRevoked(ids), tunnels }, tls);
  } catch (err) {
    for (const l of listeners) l.server.close();
    tls?.close();
    await metricsServer?.close();
    await admission.close();
    await cluster?.close();
    await audit.close();
    throw err;
  }
  const material = tls;
  // Nor does a connection outlive its certificate: a sweep ends the ones past notAfter (one date comparison each).
  const expirySweep = setInterval(() => void endExpiredConnections(openConnections(), Date.now(), tunnels).catch(couldNotEnd('expired')), CERTIFICATE_EXPIRY_SWEEP_MS);
  expirySweep.unref();
  metrics.observeState({ tlsExpiry: () => material.expiry(), auditHealthy: () => audit.healthy });
  const witnessMaxAgeMs = witnesses && config.audit.witnessMaxAgeSeconds !== undefined ? config.audit.witnessMaxAgeSeconds * 1000 : undefined;
  readiness = () => ({
    configLoaded: true,
    authorizationWorkers: admission.workers() > 0,
    auditWritable: audit.healthy,
    accepting: tunnels.accepting,
    // Fail closed when no witness has cosigned for too long (audit.witnessMaxAgeSeconds).
    ...(witnessMaxAgeMs !== undefined && { auditWitnessed: Date.now() - (witnesses?.lastCosignedAt() ?? witnessesSince) <= witnessMaxAgeMs }),
    ...cluster?.readiness(),
  });
  audit.write({ event: 'gateway.start', detail: { config: source, listen: listeners.map((l) => l.address), routes: config.routes.map((r) => r.name), pid: process.pid, tlsTicketKey: material.ticketKeyId(), ...(metricsServer && { metrics: metricsServer.address }) } });

  return {
    listeners,
    audit,
    async reload(next, nextSource) {
      try {
        const nextAdmission = await admissionFor(next, audit, metrics, tunnels, upstreams, identityLimits, cluster?.node.revocations);
        try {
          await material.reload(next.tls);
          await rootKey.load(next.authz.rootKey);
        } catch (err) {
          await nextAdmission.close();
          throw err;
        }
        for (const l of listeners) l.setTls(material.settings());
        cluster?.peersCrl(material);
        const revocationCheck = material.revocationCheck();
        if (revocationCheck) endRevokedCertificates(revocationCheck);
        const previous = admission;
        admission = nextAdmission;
        await previous.close();
        // Upstream pools of routes the new config no longer has must not linger (the rest reopen on use).
        http.closeIdle();
        const listenChanged = JSON.stringify([next.listen, next.metrics]) !== JSON.stringify([config.listen, config.metrics]);
        // The identity limits (rate, tunnels, token size) follow the config at once; the listener's
        // (connections, timeouts, header size) are fixed when the sockets open.
        const limitsChanged = LISTENER_LIMITS.some((key) => next.limits[key] !== config.limits[key]);
        const clusterChanged = JSON.stringify(next.cluster) !== JSON.stringify(config.cluster);
        const certificatesOn = next.issuer?.certificates !== undefined && config.issuer?.certificates === undefined;
        const notes = [listenChanged && 'listen addresses change only on restart', limitsChanged && 'connection limits, timeouts and maxHeaderBytes change only on restart', clusterChanged && 'cluster: changes only on restart', certificatesOn && 'certificate logins without a client certificate start only on restart'].filter(Boolean);
        audit.write({ event: 'config.reload', decision: 'allow', detail: { config: nextSource, routes: next.routes.map((r) => r.name), tlsTicketKey: material.ticketKeyId(), ...(notes.length > 0 && { note: notes.join('; ') }) } });
        config = next;
        return { ok: true };
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        audit.write({ event: 'config.reload', decision: 'deny', reason: `kept the running config: ${reason}`, detail: { config: nextSource } });
        return { ok: false, reason };
      }
    },
    reopenAudit() {
      auditLog.reopen();
    },
    async reloadRevocations() {
      await admission.reloadRevocations();
      await material.reloadCrl();
    },
    async close(graceMs = 10_000) {
      clearInterval(expirySweep);
      for (const l of listeners) l.closeAfterResponses();
      const closing = listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve())));
      for (const l of listeners) l.server.closeIdleConnections();
      // A keep-alive connection whose exchange was in flight is closed once that exchange is done, not at the deadline.
      const idleSweep = setInterval(() => listeners.forEach((l) => l.server.closeIdleConnections()), IDLE_SWEEP_MS);
      // Sockets still in (or stuck before) the TLS handshake are owed nothing and would hold close() open.
      for (const l of listeners) l.dropUnauthenticated();
      // Tunnels never finish on their own: end them now, each with its close record. Publishers drain
      // (GOAWAY): the HTTP requests they carry finish like those to sockets, until the same deadline.
      const tunnelsClosed = tunnels.closeAll('gateway shutting down', graceMs);
      http.drain();
      const timer = setTimeout(() => listeners.forEach((l) => l.closeAllConnections()), graceMs);
      await Promise.all(closing);
      clearInterval(idleSweep);
      // The server reports closed before the sockets' own close handlers have written their records.
      const open = listeners.flatMap((l) => [...l.connections]);
      await Promise.all(open.map((socket) => new Promise<void>((resolve) => (socket.destroyed && !socket.listenerCount('close') ? resolve() : socket.once('close', () => setImmediate(resolve))))));
      clearTimeout(timer);
      await tunnelsClosed;
      tcp.close();
      udp.close();
      http.close();
      await admission.close();
      await issuer.close();
      await cluster?.close();
      material.close();
      await metricsServer?.close();
      refusals.close();
      audit.write({ event: 'gateway.stop', detail: { pid: process.pid } });
      await audit.close();
      witnesses?.close();
    },
  };
}
