// The Proxy-Status field (RFC 9209) on UDP flow refusals, HTTP/1.1 and HTTP/2 alike: the error type that fits
// the refusal, and as `details` the client's short reason only. RFC 9298 asks for it when the target fails.
import type { Refusal } from '../errors/refusal.ts';

/** The proxy's name in the field (RFC 9209 §2: an sf-token naming the intermediary). */
const PROXY_NAME = 'gatehouse';

/** RFC 9209 §2.3 error types for an upstream that would not open, by the errno (or words) of its reason. */
const UPSTREAM_ERRORS: [RegExp, string][] = [
  [/ENOTFOUND|EAI_NONAME|EAI_NODATA|EAI_AGAIN|EAI_FAIL/, 'dns_error'],
  [/timed out|ETIMEDOUT/, 'connection_timeout'],
  [/ECONNREFUSED/, 'connection_refused'],
  [/ENETUNREACH|EHOSTUNREACH|EADDRNOTAVAIL|EAFNOSUPPORT/, 'destination_ip_unroutable'],
  [/EACCES|EPERM/, 'destination_ip_prohibited'],
];

/** The error type of a refusal, or undefined where none of RFC 9209's fits (a drain is no error of the proxy's). */
function errorTypeOf(refusal: Refusal): string | undefined {
  if (refusal.code === 'GH_UPSTREAM_UNAVAILABLE') return UPSTREAM_ERRORS.find(([pattern]) => pattern.test(refusal.reason))?.[1] ?? 'destination_unavailable';
  if (refusal.code === 'GH_NOT_PUBLISHED' || refusal.code === 'GH_SERVICE_BUSY') return 'destination_unavailable';
  if (refusal.code === 'GH_DRAINING') return undefined;
  const { status } = refusal;
  // Credential, policy and limits: refused by configuration or policy, not forwarded (§2.3.14).
  if (status === 401 || status === 403 || status === 429) return 'http_request_denied';
  if (status === 404) return 'destination_not_found';
  if (status >= 400 && status < 500) return 'http_request_error';
  if (status >= 500 && status !== 502) return 'proxy_internal_error';
  return undefined;
}

/** An sf-string (RFC 8941 §3.3.3): printable ASCII, with `"` and `\` escaped. */
function sfString(text: string): string {
  return `"${text.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, (c) => `\\${c}`).slice(0, 200)}"`;
}

/** The refusal with its Proxy-Status field, when an error type fits it. */
export function withProxyStatus(refusal: Refusal): Refusal {
  const error = errorTypeOf(refusal);
  if (error === undefined) return refusal;
  return { ...refusal, headers: { ...refusal.headers, 'proxy-status': `${PROXY_NAME}; error=${error}; details=${sfString(refusal.clientReason)}` } };
}
