// Pieces the attack benchmarks share: an HTTP upstream on a UNIX socket for a test-harness gateway,
// an undici Pool presenting a user's client certificate, and one GET/POST that reports its status.
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname } from 'node:path';
import { Pool } from 'undici';
import type { Harness } from '../../test/support/gatewayHarness.ts';
import type { TestClientCertificate } from '../../test/support/pki.ts';

/** Answers every request with `ok`. */
export async function okUpstream(path: string): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  const server = createServer((_req, res) => res.writeHead(200, { 'content-length': '3' }).end('ok\n'));
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
  return server;
}

export function poolAs(h: Harness, client: TestClientCertificate, connections: number): Pool {
  return new Pool(`https://localhost:${h.port}`, { connections, pipelining: 1, connect: { ca: h.pki.caCert, cert: client.cert, key: client.key, servername: 'localhost' } });
}

/** One request; 0 when it failed without an answer. */
export async function send(pool: Pool, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body?: string): Promise<number> {
  try {
    const res = await pool.request({ method, path, headers: { host: 'localhost', ...headers }, ...(body !== undefined && { body }) });
    await res.body.dump();
    return res.statusCode;
  } catch {
    return 0;
  }
}
