// Validation of everything a caller puts into a token: user, group and route names, methods,
// path prefixes, certificate bindings. Values reach Datalog only as parameters, never as code.
import { fail, ok, type TokenResult } from './tokenErrors.ts';

const userOrGroup = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
/** Same rule as route names in routes.yaml. */
const routeName = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const methodName = /^[A-Za-z]{1,20}$/;
const controlOrSpace = /[\s\p{C}]/u;
const control = /\p{C}/u;

export function validUser(name: string): TokenResult<string> {
  if (userOrGroup.test(name)) return ok(name);
  return fail('invalid-input', `invalid user name ${JSON.stringify(name)}: use letters, digits and . _ @ + - (at most 128, starting with a letter or digit)`);
}

export function validGroup(name: string): TokenResult<string> {
  if (userOrGroup.test(name)) return ok(name);
  return fail('invalid-input', `invalid group name ${JSON.stringify(name)}: use letters, digits and . _ @ + - (at most 128, starting with a letter or digit)`);
}

export function validRoute(name: string): TokenResult<string> {
  if (routeName.test(name)) return ok(name);
  return fail('invalid-input', `invalid route name ${JSON.stringify(name)}: route names are letters, digits, _ . - (at most 128)`);
}

/** A published service name (`gatehouse publish NAME=...`): lower case letters, digits, _ and -. */
export function validService(name: string): TokenResult<string> {
  if (/^[a-z0-9][a-z0-9_-]{0,62}$/.test(name)) return ok(name);
  return fail('invalid-input', `invalid service name ${JSON.stringify(name)}: use lower case letters, digits, _ and - (at most 63)`);
}

/** HTTP methods are compared upper-case, as the gateway supplies them. */
export function validMethod(name: string): TokenResult<string> {
  if (methodName.test(name)) return ok(name.toUpperCase());
  return fail('invalid-input', `invalid HTTP method ${JSON.stringify(name)}: expected letters only, such as GET`);
}

export function validPathPrefix(prefix: string): TokenResult<string> {
  if (!prefix.startsWith('/')) return fail('invalid-input', `invalid path prefix ${JSON.stringify(prefix)}: it must start with /`);
  if (prefix.length > 1024 || controlOrSpace.test(prefix)) {
    return fail('invalid-input', `invalid path prefix ${JSON.stringify(prefix)}: no spaces or control characters, at most 1024 characters`);
  }
  return ok(prefix);
}

export function validClientCn(cn: string): TokenResult<string> {
  if (cn.length > 0 && cn.length <= 256 && !control.test(cn)) return ok(cn);
  return fail('invalid-input', `invalid client CN ${JSON.stringify(cn)}: 1 to 256 characters, no control characters`);
}

/**
 * A SHA-256 certificate fingerprint in the gateway's form `sha256:<64 lowercase hex>`. Also accepts
 * bare hex and the colon-separated upper-case form that `openssl x509 -fingerprint` prints.
 */
export function validFingerprint(fingerprint: string): TokenResult<string> {
  const hex = fingerprint.trim().replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  if (/^[0-9a-f]{64}$/.test(hex)) return ok(`sha256:${hex}`);
  return fail('invalid-input', `invalid certificate fingerprint ${JSON.stringify(fingerprint)}: expected sha256:<64 hex digits>`);
}

/** An Ed25519 public key as `ed25519/<64 hex>`, lower-cased: the only form a scope parameter may take. */
export function validDelegationKey(key: string): TokenResult<string> {
  const text = key.trim().toLowerCase();
  if (/^ed25519\/[0-9a-f]{64}$/.test(text)) return ok(text);
  return fail('invalid-input', `invalid delegation key ${JSON.stringify(key)}: expected ed25519/<64 hex digits>`);
}

/** Validates every entry of a list; the first failure wins. An empty list is refused. */
export function validList(
  what: string,
  values: readonly string[],
  check: (value: string) => TokenResult<string>,
): TokenResult<string[]> {
  if (values.length === 0) return fail('invalid-input', `empty ${what} list: give at least one, or leave the restriction out`);
  const out: string[] = [];
  for (const value of values) {
    const result = check(value);
    if (!result.ok) return result;
    if (!out.includes(result.value)) out.push(result.value);
  }
  return ok(out);
}
