// Why a tunnel could not be opened, as a value: the gateway's refusal (status + its reason), a TLS
// problem, a network problem or a protocol surprise, each explained to the user in one line.
import type { Duplex } from 'node:stream';
import { CODES, EXIT, codeForStatus } from '../errors/refusal.ts';
import type { TunnelReads } from './tunnelReads.ts';

export { EXIT };

export type TunnelFailure =
  | { kind: 'refused'; status: number; reason: string }
  | { kind: 'tls'; code: string; detail: string }
  | { kind: 'network'; code: string; detail: string }
  | { kind: 'protocol'; detail: string };

/**
 * An open tunnel. With `reads` the stream emits no 'data': its bytes go to `reads.attach(sink)`, after
 * `early` (the bytes that came with the response head).
 */
export type OpenResult = { ok: true; stream: Duplex; reads?: { from: TunnelReads; early: Buffer } } | { ok: false; failure: TunnelFailure };

/** A gateway's refusal is read as the code of its status: the exit code and the words come from the gateway's own table. */
export function exitCodeFor(failure: TunnelFailure): number {
  if (failure.kind === 'refused') return CODES[codeForStatus(failure.status)].exit;
  if (failure.kind === 'protocol') return EXIT.upstream;
  return EXIT.unreachable;
}

/** OpenSSL codes that mean the gateway did not accept our client certificate. */
const CLIENT_CERT_REJECTED = /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED|DECRYPT_ERROR)/;
/** Node/OpenSSL codes that mean we did not accept the gateway's certificate. */
const SERVER_CERT_UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);

/** Sorts an error from connecting or the TLS handshake into network or TLS trouble. */
export function classifyError(err: Error): TunnelFailure {
  const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
  const detail = err.message.trim().split('\n')[0] ?? code;
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || code.startsWith('CERT_') || SERVER_CERT_UNTRUSTED.has(code) || code === 'HOSTNAME_MISMATCH') {
    return { kind: 'tls', code, detail };
  }
  return { kind: 'network', code, detail };
}

/** One line for the user, naming the gateway and, for refusals, the gateway's own reason. */
export function describeFailure(failure: TunnelFailure, gateway: string, route: string): string {
  switch (failure.kind) {
    case 'refused': {
      const entry: { says?: string } = CODES[codeForStatus(failure.status)];
      const words = entry.says ?? 'refused';
      // An expired or revoked token is refused with 403 like a policy denial, but the cure differs.
      const stale = failure.status === 403 && /\btoken (expired|revoked)\b/.test(failure.reason);
      const hint = failure.status === 401 ? ' — check the token file or GATEHOUSE_TOKEN' : stale ? ' — ask for a new token' : failure.status === 403 ? ' — the token does not allow this route for this certificate' : '';
      return `${gateway} refused route ${route}: ${failure.status} ${words}: ${JSON.stringify(failure.reason)}${hint}`;
    }
    case 'tls':
      if (SERVER_CERT_UNTRUSTED.has(failure.code)) return `TLS: the certificate of ${gateway} is not signed by a trusted CA (${failure.code}); give the site's CA with --ca or GATEHOUSE_CA`;
      if (failure.code === 'ERR_TLS_CERT_ALTNAME_INVALID' || failure.code === 'HOSTNAME_MISMATCH') return `TLS: the certificate of ${gateway} is not valid for that host name: ${failure.detail}`;
      if (failure.code === 'CERT_HAS_EXPIRED') return `TLS: the certificate of ${gateway} has expired`;
      if (failure.code === 'CLIENT_CERT_REJECTED') return `TLS: ${gateway} rejected the client certificate (${failure.detail}); is it issued by the site's CA and still valid?`;
      if (CLIENT_CERT_REJECTED.test(failure.code)) return `TLS: ${gateway} rejected the client certificate (${failure.code}); is it issued by the site's CA and still valid?`;
      return `TLS with ${gateway} failed: ${failure.code}: ${failure.detail}`;
    case 'network':
      if (failure.code === 'ECONNREFUSED') return `cannot connect to ${gateway}: connection refused (is the gateway running on that port?)`;
      if (failure.code === 'ENOTFOUND' || failure.code === 'EAI_AGAIN') return `cannot connect to ${gateway}: host name not found`;
      if (failure.code === 'ETIMEDOUT' || failure.code === 'TIMEOUT') return `cannot connect to ${gateway}: timed out`;
      if (failure.code === 'ECONNRESET' || failure.code === 'CLOSED') return `${gateway} closed the connection before answering (${failure.code}); was the client certificate rejected?`;
      return `cannot connect to ${gateway}: ${failure.code}: ${failure.detail}`;
    case 'protocol':
      return `unexpected answer from ${gateway}: ${failure.detail}`;
  }
}

/** The gateway's reason from an error body `{"error": "..."}`, else the body text, else the status text. */
export function refusalReason(body: string, statusText: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    // Not JSON: fall through.
  }
  const text = body.trim().split('\n')[0]?.slice(0, 200) ?? '';
  return text || statusText;
}
