// The checks a token block carries to narrow what it allows: expiry, routes, methods, path prefix
// and binding to a client certificate. Shared by minting (authority block) and attenuation.
import { checkTtlSeconds, expiryAfter } from './duration.ts';
import {
  validClientCn,
  validFingerprint,
  validList,
  validMethod,
  validPathPrefix,
  validRoute,
} from './names.ts';
import { ok, passOn, type TokenResult } from './tokenErrors.ts';

export interface Restrictions {
  /** Lifetime from `now`; the block then requires `time($t), $t <= now + ttl`. */
  ttlSeconds?: number;
  /** Route names the token may be used on. */
  routes?: string[];
  /** HTTP methods (compared upper-case). */
  methods?: string[];
  /** Request path prefix; end it with `/` to mean a folder. */
  pathPrefix?: string;
  /** `sha256:<hex>` of the client certificate the token is bound to. */
  clientFingerprint?: string;
  /** Common name of the client certificate the token is bound to. */
  clientCn?: string;
}

export type DatalogParameter = string | Date | Set<string>;

/** Datalog with `{name}` placeholders and their values, for addCodeWithParameters. */
export interface ParameterizedCode {
  code: string;
  parameters: Record<string, DatalogParameter>;
  /** The expiry the code enforces, when it has one. */
  expiresAt?: Date;
}

export function hasRestriction(r: Restrictions): boolean {
  return (
    r.ttlSeconds !== undefined ||
    r.routes !== undefined ||
    r.methods !== undefined ||
    r.pathPrefix !== undefined ||
    r.clientFingerprint !== undefined ||
    r.clientCn !== undefined
  );
}

/** Validates the restrictions and renders them as checks; user input only ever becomes parameters. */
export function restrictionChecks(r: Restrictions, now: Date): TokenResult<ParameterizedCode> {
  const lines: string[] = [];
  const parameters: Record<string, DatalogParameter> = {};
  let expiresAt: Date | undefined;
  if (r.ttlSeconds !== undefined) {
    const ttl = checkTtlSeconds(r.ttlSeconds);
    if (!ttl.ok) return passOn(ttl);
    expiresAt = expiryAfter(now, ttl.value);
    lines.push('check if time($time), $time <= {expires};');
    parameters.expires = expiresAt;
  }
  if (r.routes !== undefined) {
    const routes = validList('route', r.routes, validRoute);
    if (!routes.ok) return passOn(routes);
    lines.push('check if route($route), {routes}.contains($route);');
    parameters.routes = new Set(routes.value);
  }
  if (r.methods !== undefined) {
    const methods = validList('method', r.methods, validMethod);
    if (!methods.ok) return passOn(methods);
    lines.push('check if method($method), {methods}.contains($method);');
    parameters.methods = new Set(methods.value);
  }
  if (r.pathPrefix !== undefined) {
    const prefix = validPathPrefix(r.pathPrefix);
    if (!prefix.ok) return passOn(prefix);
    lines.push('check if path($path), $path.starts_with({path_prefix});');
    parameters.path_prefix = prefix.value;
  }
  if (r.clientFingerprint !== undefined) {
    const fingerprint = validFingerprint(r.clientFingerprint);
    if (!fingerprint.ok) return passOn(fingerprint);
    lines.push('check if client_fingerprint({fingerprint});');
    parameters.fingerprint = fingerprint.value;
  }
  if (r.clientCn !== undefined) {
    const cn = validClientCn(r.clientCn);
    if (!cn.ok) return passOn(cn);
    lines.push('check if client_cn({client_cn});');
    parameters.client_cn = cn.value;
  }
  return ok({ code: lines.join('\n'), parameters, ...(expiresAt ? { expiresAt } : {}) });
}
