// Minting: an authority block naming the user and groups, plus the checks that bound it
// (expiry, routes, client certificate), signed with the root private key.
import type { PrivateKey } from '@biscuit-auth/biscuit-wasm';
import { biscuit, biscuitErrorText, datalogParameters } from './biscuitModule.ts';
import { defaultTtlSeconds } from './duration.ts';
import { parsePublicKey } from './keyFiles.ts';
import { validGroup, validUser } from './names.ts';
import { publishGrantCode } from './publishRight.ts';
import { restrictionChecks, type DatalogParameter } from './restrictions.ts';
import { fail, ok, passOn, type TokenResult } from './tokenErrors.ts';

export interface IssuedLogin {
  /** 32 lowercase hex digits. */
  id: string;
  time: Date;
  lifetimeSeconds: number;
  idpSessionEnd?: Date;
}

export interface MintOptions {
  privateKey: PrivateKey;
  user: string;
  groups?: string[];
  /** Lifetime in seconds; default 12 hours. Every minted token expires. */
  ttlSeconds?: number;
  /** Route names the token is limited to; absent = any route whose policy accepts the user. */
  routes?: string[];
  /** Bind to the client certificate with this fingerprint (`sha256:<hex>`). */
  clientFingerprint?: string;
  /** Bind to client certificates with this common name. */
  clientCn?: string;
  /**
   * Makes the token delegable: `ed25519/<hex>` public key of a delegation key pair. A block signed with
   * its private key may name another client certificate (`gatehouse token attenuate --delegation-key`).
   */
  delegationKey?: string;
  /**
   * The right to publish with `gatehouse publish`: these services, or `["*"]` for any (`publish_right(...)`
   * facts). Absent = the token cannot publish. A later block passes the right on only by granting it again.
   */
  publish?: string[];
  /** The identity provider's login this token was issued for: `idp_issuer(...)` and `idp_subject(...)` facts. */
  idp?: { issuer: string; subject: string };
  /**
   * The login an issued token comes from, shared by the first token and every refresh of it: `login_id(...)`,
   * `login_time(...)`, `login_lifetime(<seconds>)` (each token's lifetime) and, when the IdP said, `idp_session_end(...)`.
   */
  login?: IssuedLogin;
  /** Root key id written in the token: an issuer's key id (authz.issuers), so the gateway picks that issuer's key. Absent for the root key. */
  rootKeyId?: number;
  /** The minting time the expiry counts from; default now. */
  now?: Date;
}

/** The Datalog source and parameters of the authority block (exported for inspection in tests). */
export function authorityCode(options: MintOptions): TokenResult<{ code: string; parameters: Record<string, DatalogParameter>; scope: Record<string, string> }> {
  const user = validUser(options.user);
  if (!user.ok) return passOn(user);
  const lines = ['user({user});'];
  const parameters: Record<string, DatalogParameter> = { user: user.value };
  const groups = [...new Set(options.groups ?? [])];
  for (const [index, name] of groups.entries()) {
    const group = validGroup(name);
    if (!group.ok) return passOn(group);
    lines.push(`group({group_${index}});`);
    parameters[`group_${index}`] = group.value;
  }
  if (options.idp !== undefined) {
    for (const [name, value] of [['idp_issuer', options.idp.issuer], ['idp_subject', options.idp.subject]] as const) {
      // Stated by the issuer from the IdP's ID token: bounded, printable, and only ever a parameter.
      if (value.length === 0 || value.length > 1024 || /[\u0000-\u001f\u007f]/.test(value)) return fail('invalid-input', `${name} must be 1 to 1024 printable characters`);
      lines.push(`${name}({${name}});`);
      parameters[name] = value;
    }
  }
  if (options.login !== undefined) {
    const { id, time, lifetimeSeconds, idpSessionEnd } = options.login;
    if (!/^[0-9a-f]{32}$/.test(id)) return fail('invalid-input', 'login_id must be 32 lowercase hex digits');
    if (!Number.isInteger(lifetimeSeconds) || lifetimeSeconds <= 0) return fail('invalid-input', 'login_lifetime must be a positive whole number of seconds');
    // The lifetime is a checked integer, written as a literal: parameters carry strings, dates and sets only.
    lines.push('login_id({login_id});', 'login_time({login_time});', `login_lifetime(${lifetimeSeconds});`);
    parameters.login_id = id;
    parameters.login_time = time;
    if (idpSessionEnd !== undefined) {
      lines.push('idp_session_end({idp_session_end});');
      parameters.idp_session_end = idpSessionEnd;
    }
  }
  let grants: Record<string, DatalogParameter> = {};
  if (options.publish !== undefined) {
    const grant = publishGrantCode(options.publish);
    if (!grant.ok) return passOn(grant);
    lines.push(grant.value.code);
    grants = grant.value.parameters;
  }
  const checks = restrictionChecks(
    {
      ttlSeconds: options.ttlSeconds ?? defaultTtlSeconds,
      ...(options.routes !== undefined ? { routes: options.routes } : {}),
      ...(options.clientFingerprint !== undefined ? { clientFingerprint: options.clientFingerprint } : {}),
      ...(options.clientCn !== undefined ? { clientCn: options.clientCn } : {}),
      ...(options.delegationKey !== undefined ? { delegationKey: options.delegationKey } : {}),
    },
    options.now ?? new Date(),
  );
  if (!checks.ok) return passOn(checks);
  return ok({ code: [...lines, checks.value.code].join('\n'), parameters: { ...parameters, ...grants, ...checks.value.parameters }, scope: checks.value.scope });
}

/**
 * Scope parameters checked by parsing each key first: biscuit-wasm panics on a value that is not a
 * valid public key, so only what the library itself printed reaches it.
 */
export function scopeParameters(scope: Record<string, string>): TokenResult<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(scope)) {
    const key = parsePublicKey(text, `${name} key`);
    if (!key.ok) return passOn(key);
    out[name] = key.value.toDatalogParameter();
    key.value.free();
  }
  return ok(out);
}

/** Mints a token; returns it as base64url text. */
export function mintToken(options: MintOptions): TokenResult<string> {
  const authority = authorityCode(options);
  if (!authority.ok) return passOn(authority);
  const scope = scopeParameters(authority.value.scope);
  if (!scope.ok) return passOn(scope);
  const builder = new biscuit.BiscuitBuilder();
  let token;
  try {
    builder.addCodeWithParameters(authority.value.code, datalogParameters(authority.value.parameters), scope.value);
    if (options.rootKeyId !== undefined) builder.setRootKeyId(options.rootKeyId);
    token = builder.build(options.privateKey);
  } catch (error) {
    return fail('library', `cannot mint the token: ${biscuitErrorText(error)}`);
  }
  try {
    return ok(token.toBase64());
  } finally {
    token.free();
  }
}
