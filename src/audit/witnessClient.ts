// The log's side of c2sp.org/tlog-witness: one add-checkpoint request over mTLS (kept-alive agent),
// and the request body (old size, consistency proof lines, the checkpoint note).
import { Agent, request } from 'node:https';

export interface WitnessEndpoint {
  /** https://host:port (the submission prefix). */
  url: string;
  /** PEM contents. */
  ca?: string;
  cert?: string;
  key?: string;
}

export interface WitnessReply {
  status: number;
  body: string;
  /** Round trip in milliseconds. */
  ms: number;
}

export function addCheckpointBody(old: number, proof: readonly Buffer[], note: string): string {
  return `old ${old}\n${proof.map((h) => `${h.toString('base64')}\n`).join('')}\n${note}`;
}

/** A client for one witness: requests share one kept-alive connection (the spec asks for keep-alive). */
export function witnessClient(endpoint: WitnessEndpoint, timeoutMs = 10_000): { post(body: string): Promise<WitnessReply>; close(): void } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, ...(endpoint.ca && { ca: endpoint.ca }), ...(endpoint.cert && { cert: endpoint.cert }), ...(endpoint.key && { key: endpoint.key }) });
  const target = new URL('add-checkpoint', endpoint.url.endsWith('/') ? endpoint.url : `${endpoint.url}/`);
  return {
    post(body) {
      const started = performance.now();
      return new Promise((resolve, reject) => {
        const req = request(target, { method: 'POST', agent, headers: { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) }, timeout: timeoutMs }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            // A witness's answer is a few lines: a large one is not a witness.
            if (chunks.length < 64) chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: performance.now() - started }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
        req.on('error', reject);
        req.end(body);
      });
    },
    close: () => agent.destroy(),
  };
}
