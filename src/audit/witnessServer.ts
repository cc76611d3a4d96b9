// `gatehouse audit witness`: the mTLS HTTPS service of c2sp.org/tlog-witness for the logs in its
// config. It cosigns checkpoints that extend what it witnessed and refuses (loudly) those that do not.
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { readAuditPublicKey } from './auditCheckpoint.ts';
import { witnessVerifierKey } from './cosignature.ts';
import { addCheckpoint, type WitnessedLogConfig } from './witnessAdd.ts';
import { readWitnessState, saveWitnessState, type WitnessState } from './witnessState.ts';

const witnessConfigSchema = z
  .object({
    /** The witness's name in its cosignatures (a schema-less URL, e.g. `logs.example.org/witness`). */
    name: z.string().regex(/^[^\s+]+$/, 'no whitespace and no "+"'),
    /** host:port to listen on. */
    listen: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port'),
    /** The witness's own ed25519 private key (PKCS#8 PEM, `gatehouse audit keygen`). */
    key: z.string().min(1),
    /** Where it keeps what it cosigned (state.json and one `<origin>.checkpoint` per log). */
    stateDir: z.string().min(1),
    tls: z.object({ cert: z.string().min(1), key: z.string().min(1), clientCa: z.string().min(1) }).strict(),
    logs: z
      .array(
        z
          .object({
            origin: z.string().regex(/^[^\s+]+$/),
            /** The log's checkpoint public key (the gateway's audit-signing.pub). */
            key: z.string().min(1),
            /** Client certificates that may submit: `cn:<CN>` or `sha256:<hex fingerprint>`. */
            clients: z.array(z.string().regex(/^(cn:.+|sha256:[0-9a-f]{64})$/, 'cn:<CN> or sha256:<hex>')).min(1),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();

export interface WitnessService {
  readonly address: string;
  readonly vkey: string;
  close(): Promise<void>;
}

export interface LoadedWitnessConfig {
  name: string;
  listen: string;
  privateKey: KeyObject;
  stateDir: string;
  tls: { cert: string; key: string; ca: string };
  logs: WitnessedLogConfig[];
}

export function loadWitnessConfig(file: string): { ok: true; value: LoadedWitnessConfig } | { ok: false; message: string } {
  try {
    const raw = witnessConfigSchema.safeParse(parse(readFileSync(file, 'utf8')));
    if (!raw.success) return { ok: false, message: `${file}: ${raw.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
    const at = (p: string) => (isAbsolute(p) ? p : resolve(dirname(file), p));
    const c = raw.data;
    const logs: WitnessedLogConfig[] = [];
    for (const l of c.logs) {
      const key = readAuditPublicKey(at(l.key));
      if (!key.ok) return { ok: false, message: `${file}: logs ${l.origin}: ${key.error.message}` };
      logs.push({ origin: l.origin, publicKey: key.value, clients: l.clients });
    }
    const privateKey = createPrivateKey(readFileSync(at(c.key)));
    if (privateKey.asymmetricKeyType !== 'ed25519') return { ok: false, message: `${file}: key: expected an ed25519 private key (gatehouse audit keygen)` };
    return { ok: true, value: { name: c.name, listen: c.listen, privateKey, stateDir: at(c.stateDir), tls: { cert: readFileSync(at(c.tls.cert), 'utf8'), key: readFileSync(at(c.tls.key), 'utf8'), ca: readFileSync(at(c.tls.clientCa), 'utf8') }, logs } };
  } catch (err) {
    return { ok: false, message: `${file}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

/** The names a client certificate goes by in `clients`. */
function clientIds(socket: TLSSocket): string[] {
  const cert = socket.getPeerCertificate();
  if (!cert || !cert.fingerprint256) return [];
  const cn = cert.subject?.CN;
  return [`sha256:${cert.fingerprint256.replace(/:/g, '').toLowerCase()}`, ...(typeof cn === 'string' ? [`cn:${cn}`] : [])];
}

const MAX_BODY = 64 * 1024;

export async function startWitness(config: LoadedWitnessConfig, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<WitnessService> {
  const read = readWitnessState(config.stateDir);
  if (!read.ok) throw new Error(read.message);
  const state: WitnessState = read.value;
  saveWitnessState(config.stateDir, state);
  const witness = { name: config.name, privateKey: config.privateKey };
  const server: Server = createServer({ cert: config.tls.cert, key: config.tls.key, ca: config.tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (req, res) => {
    const reply = (status: number, body: string, contentType = 'text/plain; charset=utf-8') => res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) }).end(body);
    if (req.url !== '/add-checkpoint') return reply(404, 'not found\n');
    if (req.method !== 'POST') return reply(405, 'POST only\n');
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      // Decided and persisted in one turn: no other request can interleave (the spec's rollback race).
      let answer: ReturnType<typeof addCheckpoint>;
      try {
        answer = addCheckpoint(Buffer.concat(chunks).toString('utf8'), clientIds(req.socket as TLSSocket), config.logs, state, witness, Math.floor(Date.now() / 1000));
      } catch (err) {
        // No submitter's bytes may end the witness.
        return reply(400, `malformed request: ${err instanceof Error ? err.message : String(err)}\n`);
      }
      try {
        if (answer.accepted) {
          const { origin, ...cosigned } = answer.accepted;
          state.logs[origin] = cosigned;
          saveWitnessState(config.stateDir, state, origin);
        } else if (answer.refusal) {
          state.refused += 1;
          state.lastRefusal = { ...answer.refusal, time: new Date().toISOString() };
          saveWitnessState(config.stateDir, state);
          log(`gatehouse witness: REFUSED a checkpoint of ${answer.refusal.origin}: ${answer.refusal.reason} (${state.refused} refused so far)`);
        }
      } catch (err) {
        return reply(500, `could not save the witness state: ${err instanceof Error ? err.message : String(err)}\n`);
      }
      reply(answer.status, answer.body, answer.contentType);
    });
    req.on('error', () => res.destroy());
  });
  server.on('tlsClientError', () => {});
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(config.listen);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(Number(m?.[2]), m?.[1], () => ok());
  });
  const bound = server.address();
  const address = typeof bound === 'object' && bound ? `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}` : config.listen;
  return {
    address,
    vkey: witnessVerifierKey(config.name, config.privateKey),
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}
