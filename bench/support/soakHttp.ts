// The soak's sustained HTTP load: an undici Pool presenting a client certificate sends requests at a
// fixed rate; every answer must be 200 with the body the upstream wrote for exactly that request.
import { createServer, type Server } from 'node:http';
import { Pool, buildConnector } from 'undici';
import { sourceOf, type ClientCredentials, type Ledger } from './soakLedger.ts';

/** The HTTP upstream on a UNIX socket: answers with the path it was asked for; notes smuggled requests. */
export function startHttpUpstream(socketPath: string, ledger: Ledger): Promise<Server> {
  const server = createServer((req, res) => {
    // A request the soak only ever put inside another request's body: the gateway let it through.
    if (req.url?.includes('smuggled')) ledger.error('smuggled request reached the upstream', `${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      const body = req.url ?? '';
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((ok, fail) => server.once('error', fail).listen(socketPath, () => ok(server)));
}

export interface HttpLoadOptions {
  port: number;
  creds: ClientCredentials;
  token: string;
  requestsPerSecond: number;
  connections: number;
  maxInFlight: number;
}

export interface HttpLoad {
  stop(): Promise<void>;
  latencies: number[];
}

export function startHttpLoad(opts: HttpLoadOptions, ledger: Ledger): HttpLoad {
  const connector = buildConnector({ ca: opts.creds.ca, cert: opts.creds.cert, key: opts.creds.key, servername: 'localhost' });
  const pool = new Pool(`https://127.0.0.1:${opts.port}`, {
    connections: opts.connections,
    pipelining: 1,
    // Every connection the pool opens is noted, so the audit check can find its open and close records.
    connect: (options, callback) =>
      connector({ ...options, servername: 'localhost' }, (...args) => {
        const [err, socket] = args;
        if (err === null && socket !== null) {
          ledger.expect('connection', sourceOf(socket));
          ledger.count('http connections');
        }
        callback(...args);
      }),
  });
  const headers = { authorization: `Bearer ${opts.token}` };
  const latencies: number[] = [];
  const inFlight = new Set<Promise<void>>();
  let n = 0;

  const one = async (): Promise<void> => {
    const path = `/soak/${++n}`;
    const t0 = performance.now();
    try {
      const res = await pool.request({ path, method: 'GET', headers });
      const body = await res.body.text();
      if (res.statusCode >= 500) ledger.error('http 5xx', `${res.statusCode} ${body.slice(0, 120)}`);
      else if (res.statusCode !== 200) ledger.error(`http ${res.statusCode}`, body.slice(0, 120));
      else if (body !== path) ledger.error('http body for another request', `${path} got ${body.slice(0, 60)}`);
      else {
        ledger.count('http 200');
        latencies.push(performance.now() - t0);
      }
    } catch (err) {
      ledger.error('http request failed', (err as { code?: string }).code ?? (err as Error).message);
    }
  };

  // A steady rate, not a closed loop: requests keep coming whether or not the gateway keeps up.
  const tickMs = 20;
  let owed = 0;
  const timer = setInterval(() => {
    owed += (opts.requestsPerSecond * tickMs) / 1000;
    while (owed >= 1) {
      owed -= 1;
      if (inFlight.size >= opts.maxInFlight) {
        ledger.count('http requests not sent (too many in flight)');
        continue;
      }
      ledger.count('http requests sent');
      const p = one().finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  }, tickMs);

  return {
    latencies,
    async stop() {
      clearInterval(timer);
      await Promise.all(inFlight);
      await pool.close();
    },
  };
}
