// The composition root: wires listener -> admission (routing + authz) -> forwarders, with audit
// observing every stage. Owns reload (new config, same sockets) and graceful shutdown.
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AuditLog } from '../audit/auditLog.ts';
import { openAuditLog } from '../audit/auditLog.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { createRequestAuthorizer, type ReloadableRequestAuthorizer, type ReloadResult } from '../authz/requestAuthorizer.ts';
import { authorizerOptions } from '../authz/authorizerOptions.ts';
import { auditWithMetrics, createGatewayMetrics, type GatewayMetrics } from '../metrics/gatewayMetrics.ts';
import { startMetricsServer, type MetricsServer } from '../metrics/metricsServer.ts';
import { createHttpForwarder } from '../forward/httpForwarder.ts';
import { createIdentityLimits } from '../admission/identityLimits.ts';
import { RouteTable } from '../routing/routeTable.ts';
import { openListener, type BoundListener, type TlsSettings } from '../listener/tlsListener.ts';
import type { AdmissionContext } from '../admission/admitRequest.ts';
import { createTunnelForwarder, isTunnelEndpoint } from '../forward/tunnelForwarder.ts';
import { createTunnelRegistry, type TunnelRegistry } from '../forward/tunnelSession.ts';
import { createWebSocketForwarder } from '../forward/websocketForwarder.ts';
import { createPublishEndpoint, isPublishEndpoint } from '../forward/publishEndpoint.ts';
import { createUpstreamOpener, type UpstreamOpener } from '../upstream/openUpstream.ts';
import { createPublishedServices } from '../upstream/publishedServices.ts';

export interface Gateway {
  readonly listeners: readonly BoundListener[];
  readonly audit: AuditLog;
  /** Swaps routes, TLS material and keys; the running config stays if anything fails. */
  reload(config: GatewayConfig, source: string): Promise<{ ok: true } | { ok: false; reason: string }>;
  /** Re-reads the revocation list (SIGHUP does this too). */
  reloadRevocations(): Promise<void>;
  /** Stops accepting, lets requests in flight finish (up to `graceMs`), then flushes the audit log. */
  close(graceMs?: number): Promise<void>;
}

function tlsSettings(config: GatewayConfig): TlsSettings {
  return {
    cert: readFileSync(config.tls.cert),
    key: readFileSync(config.tls.key),
    ca: readFileSync(config.tls.clientCa),
    minVersion: config.tls.minVersion,
  };
}

async function admissionFor(config: GatewayConfig, audit: AuditLog, metrics: GatewayMetrics, tunnels: TunnelRegistry, upstreams: UpstreamOpener): Promise<AdmissionContext & { close(): Promise<void>; reloadRevocations(): Promise<unknown> }> {
  // The first reload runs inside createRequestAuthorizer, before `authorizer` exists.
  let authorizer: ReloadableRequestAuthorizer | undefined;
  const onRevocationReload = (result: ReloadResult) => {
    audit.write(result.ok
      ? { event: 'revocation.reload', decision: 'allow', detail: { file: config.authz.revocationList, count: result.count } }
      : { event: 'revocation.reload', decision: 'deny', reason: `${result.reason}: refusing every request until the list is readable`, detail: { file: config.authz.revocationList } });
    // Tunnels are decided once, when they open: a revocation must also end the ones already open.
    const current = authorizer;
    if (result.ok && current) void tunnels.endRevoked((ids) => current.isRevoked(ids));
  };
  authorizer = await createRequestAuthorizer(authorizerOptions(config.authz, { observer: metrics.authz, onRevocationReload }));
  const ready = authorizer;
  return {
    routes: new RouteTable(config.routes, config.authz.limits),
    authorizer: ready,
    upstreams,
    close: () => ready.close(),
    reloadRevocations: () => ready.reloadRevocations(),
  };
}

export async function startGateway(config: GatewayConfig, source: string): Promise<Gateway> {
  // Metrics count what the audit records say, so every stage is observed without knowing about metrics.
  const metrics = createGatewayMetrics();
  const audit = auditWithMetrics(
    openAuditLog({
      ...config.audit,
      onError: (err) => process.stderr.write(`gatehouse: audit log ${config.audit.file} cannot be written (${err.message}): refusing all traffic until restart\n`),
    }),
    metrics,
  );
  // Tunnels (CONNECT, the WebSocket tunnel endpoint) and proxied WebSockets live until shutdown or a revocation ends them.
  const tunnels = createTunnelRegistry();
  // Services published by `gatehouse publish` outlive reloads; every forwarder reaches them through `upstreams`.
  const published = createPublishedServices(() => config.publish);
  published.registerMetrics(metrics.registry);
  const upstreams = createUpstreamOpener(published);
  let admission = await admissionFor(config, audit, metrics, tunnels, upstreams);
  let metricsServer: MetricsServer | undefined;
  try {
    if (config.metrics) metricsServer = await startMetricsServer(config.metrics.listen, metrics.registry);
  } catch (err) {
    await admission.close();
    await audit.close();
    throw new Error(`metrics listener ${config.metrics?.listen}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Per-identity limits outlive reloads (a reload must not hand everyone a fresh bucket); their numbers follow the config.
  const limits = () => config.limits;
  const identityLimits = createIdentityLimits(limits);
  const http = createHttpForwarder({ admission: () => admission, audit, identityLimits, limits, upstreams });
  const tunnelDeps = { admission: () => admission, audit, tunnels, identityLimits, limits, upstreams };
  const publish = createPublishEndpoint({ admission: () => admission, audit, tunnels, identityLimits, config: () => config, published });
  const tcp = createTunnelForwarder(tunnelDeps);
  const websocket = createWebSocketForwarder(tunnelDeps);
  const handlers = {
    // The tunnel endpoint's path is reserved: it is checked before any route sees the request.
    request: (req: IncomingMessage, res: ServerResponse) => (isTunnelEndpoint(req.url) ? tcp.handleRequest(req, res) : isPublishEndpoint(req.url) ? publish.handleRequest(req, res) : http.handle(req, res)),
    upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      isTunnelEndpoint(req.url) ? tcp.handleUpgrade(req, socket, head) : isPublishEndpoint(req.url) ? publish.handleUpgrade(req, socket) : websocket.handle(req, socket, head),
    connect: tcp.handleConnect,
  };
  const tls = tlsSettings(config);
  const listeners: BoundListener[] = [];
  try {
    for (const listen of config.listen) listeners.push(await openListener(listen, tls, handlers, audit));
  } catch (err) {
    for (const l of listeners) l.server.close();
    await metricsServer?.close();
    await admission.close();
    await audit.close();
    throw err;
  }
  audit.write({ event: 'gateway.start', detail: { config: source, listen: listeners.map((l) => l.address), routes: config.routes.map((r) => r.name), pid: process.pid, ...(metricsServer && { metrics: metricsServer.address }) } });

  return {
    listeners,
    audit,
    async reload(next, nextSource) {
      try {
        const nextTls = tlsSettings(next);
        const nextAdmission = await admissionFor(next, audit, metrics, tunnels, upstreams);
        for (const l of listeners) l.server.setSecureContext(nextTls);
        const previous = admission;
        admission = nextAdmission;
        await previous.close();
        const listenChanged = JSON.stringify([next.listen, next.metrics]) !== JSON.stringify([config.listen, config.metrics]);
        audit.write({ event: 'config.reload', decision: 'allow', detail: { config: nextSource, routes: next.routes.map((r) => r.name), ...(listenChanged && { note: 'listen addresses change only on restart' }) } });
        config = next;
        return { ok: true };
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        audit.write({ event: 'config.reload', decision: 'deny', reason: `kept the running config: ${reason}`, detail: { config: nextSource } });
        return { ok: false, reason };
      }
    },
    async reloadRevocations() {
      await admission.reloadRevocations();
    },
    async close(graceMs = 10_000) {
      const closing = listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve())));
      for (const l of listeners) l.server.closeIdleConnections();
      // Tunnels never finish on their own: end them now, each with its close record.
      const tunnelsClosed = tunnels.closeAll('gateway shutting down');
      const timer = setTimeout(() => listeners.forEach((l) => l.server.closeAllConnections()), graceMs);
      await Promise.all(closing);
      // The server reports closed before the sockets' own close handlers have written their records.
      const open = listeners.flatMap((l) => [...l.connections]);
      await Promise.all(open.map((socket) => new Promise<void>((resolve) => (socket.destroyed && !socket.listenerCount('close') ? resolve() : socket.once('close', () => setImmediate(resolve))))));
      clearTimeout(timer);
      await tunnelsClosed;
      tcp.close();
      http.close();
      await admission.close();
      await metricsServer?.close();
      audit.write({ event: 'gateway.stop', detail: { pid: process.pid } });
      await audit.close();
    },
  };
}
