// What refresh and logout read from an issued token's authority block, already verified: its login, the IdP
// identity, the routes it was limited to, the certificate it is bound to and its delegation key.
import type { IssuedLogin } from '../token/mintToken.ts';

export interface IssuedTokenFacts {
  idp: { issuer: string; subject: string };
  login: IssuedLogin;
  /** Absent: the token was not limited to routes. */
  routes?: string[];
  /** `sha256:<hex>` of the certificate the token is bound to. */
  fingerprint: string;
  delegationKey?: string;
}

export type IssuedFactsResult = { ok: true; facts: IssuedTokenFacts } | { ok: false; reason: string };

const date = String.raw`(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)`;

/**
 * Each predicate as the issuer wrote it (issueToken -> mintToken), one fact per line as biscuit-wasm prints
 * the block. Strings print unescaped, so a string's pattern excludes the quote: an IdP value holding one
 * matches nothing and the token cannot be refreshed (closed), never read as another fact. No value can
 * hold a line break (mintToken refuses control characters), so every value stays within its own line.
 */
const LINES = {
  idpIssuer: /^idp_issuer\("([^"]{1,1024})"\);$/gm,
  idpSubject: /^idp_subject\("([^"]{1,1024})"\);$/gm,
  loginId: /^login_id\("([0-9a-f]{32})"\);$/gm,
  loginTime: new RegExp(String.raw`^login_time\(${date}\);$`, 'gm'),
  lifetime: /^login_lifetime\(([1-9]\d{0,8})\);$/gm,
  sessionEnd: new RegExp(String.raw`^idp_session_end\(${date}\);$`, 'gm'),
  routes: /^check if route\(\$route\), \{((?:"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"(?:, )?)+)\}\.contains\(\$route\);$/gm,
  fingerprint: /^check if client_fingerprint\("(sha256:[0-9a-f]{64})"\)(?:;| or client_fingerprint\(\$f\), delegated_fingerprint\(\$f\) trusting (ed25519\/[0-9a-f]{64}) or client_cn\(\$c\), delegated_cn\(\$c\) trusting \2;)$/gm,
} as const;

type Found = { values: string[]; extra?: string };

/** The one line of `pattern` in `source`: none, or more than one, is undefined (a token with two logins is none). */
function only(source: string, pattern: RegExp): Found | undefined {
  const matches = [...source.matchAll(pattern)];
  if (matches.length !== 1) return undefined;
  const [match] = matches;
  return match === undefined ? undefined : { values: [match[1] ?? ''], ...(match[2] !== undefined && { extra: match[2] }) };
}

/** Reads the facts from the authority block's printed source; anything missing or doubled fails. */
export function issuedTokenFacts(source: string): IssuedFactsResult {
  const missing = (what: string): IssuedFactsResult => ({ ok: false, reason: `the token's authority block has no single ${what}: not a token issued after a login` });
  const issuer = only(source, LINES.idpIssuer)?.values[0];
  const subject = only(source, LINES.idpSubject)?.values[0];
  if (issuer === undefined || subject === undefined) return missing('idp_issuer and idp_subject');
  const id = only(source, LINES.loginId)?.values[0];
  const time = only(source, LINES.loginTime)?.values[0];
  const lifetime = only(source, LINES.lifetime)?.values[0];
  if (id === undefined || time === undefined || lifetime === undefined) return missing('login_id, login_time and login_lifetime');
  const binding = only(source, LINES.fingerprint);
  const fingerprint = binding?.values[0];
  if (fingerprint === undefined) return missing('certificate binding (client_fingerprint)');
  const sessionEnds = [...source.matchAll(LINES.sessionEnd)];
  if (sessionEnds.length > 1) return missing('idp_session_end');
  const sessionEnd = sessionEnds[0]?.[1];
  const routeLines = [...source.matchAll(LINES.routes)];
  if (routeLines.length > 1) return missing('route restriction');
  const routes = routeLines[0]?.[1]?.split(', ').map((quoted) => quoted.slice(1, -1));
  const login: IssuedLogin = { id, time: new Date(time), lifetimeSeconds: Number(lifetime), ...(sessionEnd !== undefined && { idpSessionEnd: new Date(sessionEnd) }) };
  return {
    ok: true,
    facts: { idp: { issuer, subject }, login, fingerprint, ...(routes !== undefined && { routes }), ...(binding?.extra !== undefined && { delegationKey: binding.extra }) },
  };
}
