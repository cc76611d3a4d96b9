// HTTP forwarding: admits each request through the shared admission path, then streams it to the
// upstream with http-proxy-3 and writes one audit record when the response is done.
import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { PassThrough } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient, type AuditRecord } from '../audit/auditRecord.ts';
import { admitRequest, type AdmissionContext } from '../admission/admitRequest.ts';
import { contextOf } from '../listener/connectionContext.ts';
import type { UpstreamTarget } from '../upstream/upstreamTarget.ts';
import { applyIdentityHeaders, bearerToken } from './identityHeaders.ts';

export interface HttpForwarderDeps {
  /** Read per request, so a config reload takes effect for the next request. */
  admission: () => AdmissionContext;
  audit: AuditLog;
}

/** The headers and JSON body of a refusal; shared with the forwarders that answer on a raw socket. */
export function refusal(status: number, clientReason: string): { headers: Record<string, string | number>; body: string } {
  const body = JSON.stringify({ error: clientReason }) + '\n';
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="gatehouse"';
  return { headers, body };
}

/** Sends a short JSON refusal. Never includes internals: those go to the audit log only. */
export function refuse(res: ServerResponse, status: number, clientReason: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { headers, body } = refusal(status, clientReason);
  res.writeHead(status, headers).end(body);
}

export function proxyTarget(upstream: UpstreamTarget): { socketPath: string; host: string } | { host: string; port: number } {
  return upstream.kind === 'unix' ? { socketPath: upstream.path, host: 'localhost' } : { host: upstream.host, port: upstream.port };
}

export function createHttpForwarder(deps: HttpForwarderDeps) {
  // One keep-alive agent for all upstreams: Node keys its pools by socket path or host:port.
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 64, timeout: 60_000 });
  const proxy = createProxyServer({ xfwd: false, agent, proxyTimeout: 120_000 });
  const responseBytes = new WeakMap<IncomingMessage, { n: number; truncated: boolean }>();
  proxy.on('proxyRes', (proxyRes, req, res) => {
    const counter = responseBytes.get(req);
    if (counter) proxyRes.on('data', (chunk: Buffer) => (counter.n += chunk.length));
    // An upstream that dies mid-body: http-proxy-3 neither reports it nor ends the response, which
    // would leave the client waiting forever and the request unrecorded. Cut the client off instead.
    proxyRes.once('close', () => {
      if (proxyRes.complete) return;
      if (counter) counter.truncated = true;
      res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const conn = contextOf(req.socket as TLSSocket);
    if (!conn) return refuse(res, 421, 'connection not authenticated');
    conn.requests += 1;
    const base: AuditRecord = {
      event: 'request',
      conn: conn.id,
      req: `${conn.id}.${conn.requests}`,
      source: conn.source,
      client: auditClient(conn.identity),
      protocol: 'http',
      method: req.method ?? '',
    };
    const target = req.url ?? '';
    const finish = (fields: Partial<AuditRecord>) =>
      deps.audit.write({
        ...base,
        ...fields,
        ...(fields.path !== target && { target }),
        durationMs: Math.round((performance.now() - started) * 1000) / 1000,
      });

    if (!deps.audit.healthy) {
      refuse(res, 503, 'gateway unavailable');
      return finish({ decision: 'deny', status: 503, reason: `audit log unavailable: ${deps.audit.lastError ?? 'unknown error'}` });
    }
    // Watch for the client leaving while admission runs: its 'close' may fire before we listen again.
    let clientLeft = false;
    res.once('close', () => (clientLeft = true));
    const admission = await admitRequest(deps.admission(), {
      identity: conn.identity,
      sourceIp: conn.sourceIp,
      protocol: 'http',
      method: req.method ?? 'GET',
      hostHeader: req.headers.host,
      target: req.url ?? '',
      token: bearerToken(req.headers, 'authorization'),
    });
    const token = admission.decision && {
      user: admission.decision.user,
      ...(admission.decision.allow && { groups: admission.decision.groups }),
      revocationIds: admission.decision.revocationIds,
    };
    if (!admission.allow) {
      refuse(res, admission.status, admission.clientReason);
      return finish({ decision: 'deny', status: admission.status, reason: admission.reason, route: admission.route?.config.name, path: admission.path, token });
    }

    const { route, upstream, decision } = admission;
    if (clientLeft || res.destroyed) {
      // Nobody is waiting for the answer: do not act on the upstream on their behalf.
      return finish({ decision: 'allow', status: 499, reason: 'client closed during admission; not forwarded', route: route.config.name, path: admission.path, token });
    }
    applyIdentityHeaders(req.headers, { identity: conn.identity, sourceIp: conn.sourceIp, user: decision.user, groups: decision.groups, route: route.config.name }, route.config.forwardToken);
    req.url = admission.upstreamTarget;
    const bytesIn = { n: 0 };
    const bytesOut = { n: 0, truncated: false };
    responseBytes.set(req, bytesOut);
    const body = new PassThrough();
    body.on('data', (chunk: Buffer) => (bytesIn.n += chunk.length));
    req.pipe(body);

    let upstreamError: string | undefined;
    res.once('close', () => {
      const complete = res.writableFinished;
      finish({
        decision: 'allow',
        route: route.config.name,
        upstream: upstream.label,
        path: admission.path,
        token,
        status: upstreamError ? 502 : res.statusCode,
        reason: upstreamError
          ? `upstream error: ${upstreamError}`
          : bytesOut.truncated
            ? 'upstream closed before the response was complete'
            : complete
              ? decision.matched
              : 'client closed before response completed',
        bytesIn: bytesIn.n,
        bytesOut: bytesOut.n,
      });
    });
    proxy.web(req, res, { target: proxyTarget(upstream) as never, buffer: body }, (err: Error) => {
      upstreamError = (err as NodeJS.ErrnoException).code ?? err.message;
      refuse(res, 502, 'upstream unavailable');
    });
  }

  return {
    handle,
    close(): void {
      agent.destroy();
      proxy.close();
    },
  };
}
