// The composition root: wires listener -> admission (routing + authz) -> forwarders, with audit
// observing every stage. Owns reload (new config, same sockets) and graceful shutdown.
import { readFileSync } from 'node:fs';
import type { AuditLog } from '../audit/auditLog.ts';
import { openAuditLog } from '../audit/auditLog.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { createRequestAuthorizer } from '../authz/requestAuthorizer.ts';
import { createHttpForwarder } from '../forward/httpForwarder.ts';
import { RouteTable } from '../routing/routeTable.ts';
import { openListener, type BoundListener, type TlsSettings } from '../listener/tlsListener.ts';
import type { AdmissionContext } from './admitRequest.ts';
import { refuseUnsupported } from './unsupported.ts';

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

async function admissionFor(config: GatewayConfig): Promise<AdmissionContext & { close(): Promise<void>; reloadRevocations(): Promise<unknown> }> {
  const authorizer = await createRequestAuthorizer({
    rootKeyFile: config.authz.rootKey,
    ...(config.authz.revocationList !== undefined && { revocationListFile: config.authz.revocationList }),
  });
  return {
    routes: new RouteTable(config.routes, config.authz.limits),
    authorizer,
    close: () => authorizer.close(),
    reloadRevocations: () => authorizer.reloadRevocations(),
  };
}

export async function startGateway(config: GatewayConfig, source: string): Promise<Gateway> {
  const audit = openAuditLog({
    ...config.audit,
    onError: (err) => process.stderr.write(`gatehouse: audit log ${config.audit.file} cannot be written (${err.message}): refusing all traffic until restart\n`),
  });
  let admission = await admissionFor(config);
  const http = createHttpForwarder({ admission: () => admission, audit });
  const handlers = {
    request: http.handle,
    upgrade: refuseUnsupported(audit, 'websocket'),
    connect: refuseUnsupported(audit, 'tcp'),
  };
  const tls = tlsSettings(config);
  const listeners: BoundListener[] = [];
  try {
    for (const listen of config.listen) listeners.push(await openListener(listen, tls, handlers, audit));
  } catch (err) {
    for (const l of listeners) l.server.close();
    await admission.close();
    await audit.close();
    throw err;
  }
  audit.write({ event: 'gateway.start', detail: { config: source, listen: listeners.map((l) => l.address), routes: config.routes.map((r) => r.name), pid: process.pid } });

  return {
    listeners,
    audit,
    async reload(next, nextSource) {
      try {
        const nextTls = tlsSettings(next);
        const nextAdmission = await admissionFor(next);
        for (const l of listeners) l.server.setSecureContext(nextTls);
        const previous = admission;
        admission = nextAdmission;
        await previous.close();
        const listenChanged = JSON.stringify(next.listen) !== JSON.stringify(config.listen);
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
      const timer = setTimeout(() => listeners.forEach((l) => l.server.closeAllConnections()), graceMs);
      await Promise.all(closing);
      // The server reports closed before the sockets' own close handlers have written their records.
      const open = listeners.flatMap((l) => [...l.connections]);
      await Promise.all(open.map((socket) => new Promise<void>((resolve) => (socket.destroyed && !socket.listenerCount('close') ? resolve() : socket.once('close', () => setImmediate(resolve))))));
      clearTimeout(timer);
      http.close();
      await admission.close();
      audit.write({ event: 'gateway.stop', detail: { pid: process.pid } });
      await audit.close();
    },
  };
}
