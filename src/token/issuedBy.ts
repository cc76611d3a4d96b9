// Who stands behind an issued token, from its authority block as printed: the IdP issuer and subject the
// issuer wrote (`idp_issuer(...)`, `idp_subject(...)`), read once per token for the records of its requests.

export interface IdpIdentity {
  issuer: string;
  subject: string;
}

/**
 * One fact per line, as biscuit-wasm prints a block. Strings print unescaped, so the pattern excludes the
 * quote: a value holding one matches nothing (no identity is read rather than a wrong one). No value can
 * hold a line break (mintToken refuses control characters), so each value stays within its own line.
 */
const IDP_ISSUER = /^idp_issuer\("([^"]{1,1024})"\);$/gm;
const IDP_SUBJECT = /^idp_subject\("([^"]{1,1024})"\);$/gm;

/** The single value of `pattern` in `source`; none, or more than one, is undefined. */
export function singleFact(source: string, pattern: RegExp): string | undefined {
  const matches = [...source.matchAll(pattern)];
  return matches.length === 1 ? matches[0]?.[1] : undefined;
}

/** The IdP identity an authority block states, when it states exactly one issuer and one subject. */
export function idpOfAuthority(source: string): IdpIdentity | undefined {
  const issuer = singleFact(source, IDP_ISSUER);
  const subject = singleFact(source, IDP_SUBJECT);
  return issuer === undefined || subject === undefined ? undefined : { issuer, subject };
}
