// The checks a token block carries to narrow what it allows: expiry, routes, methods, path prefix
// and binding to a client certificate. Shared by minting (authority block) and attenuation.
//
// Delegation: a token minted with a delegation key accepts its holder's certificate OR a certificate
// named by a block signed with that key (delegated_fingerprint / delegated_cn facts). Only the holder of
// the delegation key can write such a block, and checks can only be added, never removed.
import { checkTtlSeconds, expiryAfter } from './duration.ts';
import {
  validClientCn,
  validDelegationKey,
  validFingerprint,
  validList,
  validMethod,
  validPathPrefix,
  validRoute,
  validService,
} from './names.ts';
import { fail, ok, passOn, type TokenResult } from './tokenErrors.ts';

export interface Restrictions {
  /** Lifetime from `now`; the block then requires `time($t), $t <= now + ttl`. */
  ttlSeconds?: number;
  /** Route names the token may be used on. */
  routes?: string[];
  /** HTTP methods (compared upper-case). */
  methods?: string[];
  /** Request path prefix; end it with `/` to mean a folder. */
  pathPrefix?: string;
  /** Only publishing (`gatehouse publish`) of these services: `check if service($s)`, so no request passes. */
  publishServices?: string[];
  /** `sha256:<hex>` of the client certificate the token is bound to. */
  clientFingerprint?: string;
  /** Common name of the client certificate the token is bound to. */
  clientCn?: string;
  /** Authority block only: delegation public key (`ed25519/<hex>`) whose signed blocks may name another client. */
  delegationKey?: string;
  /** Delegation block only (signed by the delegation key): also state the binding as delegated_* facts. */
  delegate?: boolean;
}

export type DatalogParameter = string | Date | Set<string>;

/** Datalog with `{name}` placeholders and their values, for addCodeWithParameters. */
export interface ParameterizedCode {
  code: string;
  parameters: Record<string, DatalogParameter>;
  /** Scope parameters (`trusting {name}`): name -> public key in Datalog parameter form. */
  scope: Record<string, string>;
  /** The expiry the code enforces, when it has one. */
  expiresAt?: Date;
}

export function hasRestriction(r: Restrictions): boolean {
  return (
    r.ttlSeconds !== undefined ||
    r.routes !== undefined ||
    r.methods !== undefined ||
    r.pathPrefix !== undefined ||
    r.publishServices !== undefined ||
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
  if (r.publishServices !== undefined) {
    const services = validList('service', r.publishServices, validService);
    if (!services.ok) return passOn(services);
    lines.push('check if service($service), {services}.contains($service);');
    parameters.services = new Set(services.value);
  }
  const scope: Record<string, string> = {};
  let delegable = '';
  if (r.delegationKey !== undefined) {
    if (r.clientFingerprint === undefined && r.clientCn === undefined) {
      return fail('invalid-input', 'a delegable token must be bound to its holder: give a certificate (or common name) to bind it to');
    }
    const key = validDelegationKey(r.delegationKey);
    if (!key.ok) return passOn(key);
    scope.delegation = key.value;
    delegable = ' or client_fingerprint($f), delegated_fingerprint($f) trusting {delegation} or client_cn($c), delegated_cn($c) trusting {delegation}';
  }
  if (r.clientFingerprint !== undefined) {
    const fingerprint = validFingerprint(r.clientFingerprint);
    if (!fingerprint.ok) return passOn(fingerprint);
    lines.push(`check if client_fingerprint({fingerprint})${delegable};`);
    if (r.delegate) lines.push('delegated_fingerprint({fingerprint});');
    parameters.fingerprint = fingerprint.value;
  }
  if (r.clientCn !== undefined) {
    const cn = validClientCn(r.clientCn);
    if (!cn.ok) return passOn(cn);
    lines.push(`check if client_cn({client_cn})${delegable};`);
    if (r.delegate) lines.push('delegated_cn({client_cn});');
    parameters.client_cn = cn.value;
  }
  return ok({ code: lines.join('\n'), parameters, scope, ...(expiresAt ? { expiresAt } : {}) });
}
