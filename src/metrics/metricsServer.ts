// The plain-HTTP listener Prometheus and orchestrators poll: `GET /metrics`, `/healthz` (the process
// answers) and `/readyz` (fit to take traffic). Separate from the mTLS listeners on purpose; keep it private.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServer {
  /** `host:port` actually bound (port 0 asks for a free one). */
  readonly address: string;
  close(): Promise<void>;
}

/** Each readiness check by name: true when it passes. */
export type ReadinessChecks = Record<string, boolean>;

function splitListen(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  return { host: listen.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(listen.slice(colon + 1)) };
}

function answer(req: IncomingMessage, res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body);
}

/** `readiness` is asked on every `/readyz`; before it is given (start-up) the gateway is not ready. */
export async function startMetricsServer(listen: string, registry: Registry, readiness: () => ReadinessChecks | undefined): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      answer(req, res, 405, 'text/plain', 'method not allowed\n');
      return;
    }
    switch (url) {
      case '/metrics':
        registry.metrics().then(
          (text) => answer(req, res, 200, registry.contentType, text),
          (error: unknown) => answer(req, res, 500, 'text/plain', `${error instanceof Error ? error.message : String(error)}\n`),
        );
        return;
      case '/healthz':
        answer(req, res, 200, 'text/plain', 'ok\n');
        return;
      case '/readyz': {
        const checks = readiness() ?? { configLoaded: false };
        const ready = Object.values(checks).every(Boolean);
        answer(req, res, ready ? 200 : 503, 'application/json', JSON.stringify({ ready, checks }) + '\n');
        return;
      }
      default:
        answer(req, res, 404, 'text/plain', 'not found\n');
    }
  });
  server.keepAliveTimeout = 5000;
  const { host, port } = splitListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const address = bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
