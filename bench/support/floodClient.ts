// A flooding client in its own process (so its work does not delay the measuring one): GETs a new path
// on every request over N keep-alive mTLS connections until SIGTERM, ignoring Retry-After, then prints
// how many answers of each status it got (JSON on stdout).
// Usage: node bench/support/floodClient.ts '{"url":...,"ca":PEM,"cert":PEM,"key":PEM,"token":...,"connections":200,"prefix":"/h/m-"}'
import { Pool } from 'undici';

interface FloodJob {
  url: string;
  ca: string;
  cert: string;
  key: string;
  token: string;
  connections: number;
  prefix: string;
}

const job = JSON.parse(process.argv[2] ?? '{}') as FloodJob;
const pool = new Pool(job.url, { connections: job.connections, pipelining: 1, connect: { ca: job.ca, cert: job.cert, key: job.key, servername: 'localhost' } });
const statuses: Record<string, number> = {};
let running = true;
let n = 0;
process.once('SIGTERM', () => (running = false));
const loops = Array.from({ length: job.connections }, async () => {
  while (running) {
    let status = 0;
    try {
      const res = await pool.request({ method: 'GET', path: `${job.prefix}${n++}`, headers: { host: 'localhost', authorization: `Bearer ${job.token}` } });
      await res.body.dump();
      status = res.statusCode;
    } catch {
      // counted as 0
    }
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
});
process.stderr.write('flooding\n');
await Promise.all(loops);
await pool.close();
process.stdout.write(JSON.stringify(statuses));
