// The demo upstream: a tiny HTTP service on a UNIX socket that answers with what it received,
// so a user can see exactly which identity the gateway vouched for. Also used by the tests.
import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname } from 'node:path';
import { removeStaleSocket } from '../listener/staleSocket.ts';

export interface EchoReply {
  service: string;
  method: string;
  url: string;
  /** The identity headers the gateway set, without the `x-gatehouse-` prefix. */
  identity: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  bodyBytes: number;
}

export async function startEchoService(socketPath: string, name = 'echo'): Promise<Server> {
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
  // A demo already running answers on the socket: refuse rather than cut it off its clients.
  await removeStaleSocket(socketPath);
  const server = createServer((req, res) => {
    let bodyBytes = 0;
    req.on('data', (chunk: Buffer) => (bodyBytes += chunk.length));
    req.on('end', () => {
      const identity: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) {
        if (k.startsWith('x-gatehouse-') && typeof v === 'string') identity[k.slice('x-gatehouse-'.length)] = v;
      }
      const reply: EchoReply = { service: name, method: req.method ?? '', url: req.url ?? '', identity, headers: req.headers, bodyBytes };
      const body = JSON.stringify(reply, null, 2) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject).listen(socketPath, () => resolve(server));
  });
}
