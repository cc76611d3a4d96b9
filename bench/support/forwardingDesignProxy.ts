// A minimal mTLS reverse proxy to one UNIX-socket upstream, no policy and no audit, in one of several
// forwarding designs: measures what the forwarding layer alone costs (driven by bench/forwarding-designs.ts).
// Usage: node bench/support/forwardingDesignProxy.ts VARIANT PORT SOCKET CERT KEY CA
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import { pipeline } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { Agent as UndiciAgent, fetch as undiciFetch, Pool } from 'undici';

const [variant, port, socket, cert, key, ca] = process.argv.slice(2) as [string, string, string, string, string, string];
const tls = { cert: readFileSync(cert), key: readFileSync(key), ca: readFileSync(ca), requestCert: true, rejectUnauthorized: true };
const fail = (res: ServerResponse) => () => {
  if (!res.headersSent) res.writeHead(502);
  res.end();
};

function handlerFor(name: string): (req: IncomingMessage, res: ServerResponse) => void {
  if (name === 'http-proxy-3') {
    // What the gateway does today: http-proxy-3 over a keep-alive node:http Agent.
    const agent = new HttpAgent({ keepAlive: true, maxFreeSockets: 64 });
    const proxy = createProxyServer({ xfwd: false, agent });
    return (req, res) => proxy.web(req, res, { target: { socketPath: socket, host: 'localhost' } as never }, fail(res));
  }
  if (name === 'http-proxy-3-fetch') {
    // http-proxy-3's own fetch path, with undici's fetch and a dispatcher bound to the socket.
    const dispatcher = new UndiciAgent({ connect: { socketPath: socket }, connections: 64 });
    const proxy = createProxyServer({ xfwd: false, fetch: undiciFetch as never, fetchOptions: { requestOptions: { dispatcher } as never } });
    return (req, res) => proxy.web(req, res, { target: 'http://localhost' }, fail(res));
  }
  if (name === 'node-http') {
    // node:http request + pipe, no http-proxy-3: what the library itself adds.
    const agent = new HttpAgent({ keepAlive: true, maxFreeSockets: 64 });
    return (req, res) => {
      const up = httpRequest({ socketPath: socket, path: req.url, method: req.method, headers: req.headers, agent }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        pipeline(r, res, () => {});
      });
      up.on('error', fail(res));
      pipeline(req, up, () => {});
    };
  }
  if (name === 'undici-pool') {
    // undici's Pool (the dispatcher under Node's fetch) with stream(): the body goes straight into res.
    const pool = new Pool('http://localhost', { socketPath: socket, connections: 64, pipelining: 1 });
    return (req, res) => {
      const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
      pool.stream({ path: req.url ?? '/', method: req.method as 'GET', headers: req.headers as Record<string, string>, body, opaque: res }, ({ statusCode, headers, opaque }) => {
        const out = opaque as ServerResponse;
        out.writeHead(statusCode, headers as Record<string, string>);
        return out;
      }).catch(fail(res));
    };
  }
  throw new Error(`unknown variant ${name}`);
}

const server = createServer(tls, handlerFor(variant));
server.keepAliveTimeout = 60_000;
server.listen(Number(port), '127.0.0.1', () => process.stderr.write(`listening on ${port}\n`));
process.on('SIGTERM', () => process.exit(0));
