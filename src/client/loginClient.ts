// The client side of the gateway's login endpoints (device flow, refresh, logout): one JSON POST each over
// mTLS with the user's certificate, its answer read as a typed value (the issuer's error word and code kept).
import type { ClientRequest } from 'node:http';
import { request } from 'node:https';
import { LOGIN_PATH } from '../routing/reservedPaths.ts';
import { tlsOptions, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { classifyError, type TunnelFailure } from './tunnelFailure.ts';

/** A login answer is small; anything larger is not the gateway's. */
const MAX_ANSWER = 256 * 1024;
const TIMEOUT_MS = 20_000;

export interface JsonAnswer {
  status: number;
  body: Record<string, unknown>;
  retryAfterSeconds?: number;
}

export type PostResult = { ok: true; answer: JsonAnswer } | { ok: false; failure: TunnelFailure };

/** POSTs `body` as JSON to `LOGIN_PATH + path`, with `bearer` when given; resolves with any status's JSON body. */
export function postLogin(endpoint: GatewayEndpoint, path: string, body: unknown, bearer?: string): Promise<PostResult> {
  const text = JSON.stringify(body ?? {});
  return new Promise((resolve) => {
    const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
    let req: ClientRequest;
    try {
      req = makeRequest(endpoint, path, host, text, bearer);
    } catch (err) {
      // Options TLS cannot use (a certificate it cannot parse) are thrown at once, not emitted.
      return resolve({ ok: false, failure: classifyError(err as Error) });
    }
    onAnswer(req, resolve);
    req.end(text);
  });
}

function makeRequest(endpoint: GatewayEndpoint, path: string, host: string, text: string, bearer: string | undefined): ClientRequest {
  return request({
    ...tlsOptions(endpoint),
    // One connection per call: a login is a few requests minutes apart, and no pooled socket outlives the command.
    agent: false,
    method: 'POST',
    path: `${LOGIN_PATH}${path}`,
    headers: {
      host: `${host}:${endpoint.port}`,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      accept: 'application/json',
      'user-agent': 'gatehouse-login',
      ...(bearer !== undefined && { authorization: `Bearer ${bearer}` }),
    },
    timeout: TIMEOUT_MS,
  });
}

/** Reads the answer to `req` (any status) into `resolve`, once. */
function onAnswer(req: ClientRequest, resolve: (result: PostResult) => void): void {
  let settled = false;
  const finish = (result: PostResult) => {
    if (settled) return;
    settled = true;
    resolve(result);
  };
  req.on('timeout', () => {
    req.destroy();
    finish({ ok: false, failure: { kind: 'network', code: 'TIMEOUT', detail: `no answer within ${TIMEOUT_MS} ms` } });
  });
  req.on('error', (err) => finish({ ok: false, failure: classifyError(err) }));
  req.on('response', (res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ANSWER) {
        res.destroy();
        finish({ ok: false, failure: { kind: 'protocol', detail: 'answer too large' } });
      } else chunks.push(chunk);
    });
    res.on('error', (err) => finish({ ok: false, failure: classifyError(err) }));
    res.on('end', () => {
      const status = res.statusCode ?? 0;
      const raw = Buffer.concat(chunks).toString('utf8');
      let parsed: unknown;
      try {
        parsed = raw === '' ? {} : JSON.parse(raw);
      } catch {
        parsed = { error: raw.trim().split('\n')[0]?.slice(0, 200) ?? '' };
      }
      const retryAfter = Number(res.headers['retry-after']);
      const answerBody = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
      finish({ ok: true, answer: { status, body: answerBody, ...(Number.isFinite(retryAfter) && retryAfter > 0 && { retryAfterSeconds: retryAfter }) } });
    });
  });
}

/** A field of an answer as a string ('' when absent or not a string). */
export function stringField(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  return typeof value === 'string' ? value : '';
}

/** A field of an answer as a positive number of seconds, else `fallback`. */
export function secondsField(body: Record<string, unknown>, name: string, fallback: number): number {
  const value = body[name];
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
}

/** The gateway's refusal in one line: its message (or error word), and its code when it gave one. */
export function refusalWords(answer: JsonAnswer): string {
  const message = stringField(answer.body, 'message') || stringField(answer.body, 'error') || `status ${answer.status}`;
  const code = stringField(answer.body, 'code');
  return code ? `${message} (${code})` : message;
}
