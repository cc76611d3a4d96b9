// What refresh and logout read from an issued token's authority block, already verified: its login, the IdP
// identity, the routes it was limited to, the certificate it is bound to and its delegation key.
import { idpOfAuthority, singleFact, type IdpIdentity } from '../token/issuedBy.ts';
import type { IssuedLogin } from '../token/mintToken.ts';

export interface IssuedTokenFacts {
  idp: IdpIdentity;
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
 * the block (the IdP identity as token/issuedBy.ts reads it: an IdP value holding a quote cannot be refreshed).
 */
const LINES = {
  loginId: /^login_id\("([0-9a-f]{32})"\);$/gm,
  loginTime: new RegExp(String.raw`^login_time\(${date}\);$`, 'gm'),
  lifetime: /^login_lifetime\(([1-9]\d{0,8})\);$/gm,
  sessionEnd: new RegExp(String.raw`^idp_session_end\(${date}\);$`, 'gm'),
  routes: /^check if route\(\$route\), \{((?:"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"(?:, )?)+)\}\.contains\(\$route\);$/gm,
  fingerprint: /^check if client_fingerprint\("(sha256:[0-9a-f]{64})"\)(?:;| or client_fingerprint\(\$f\), delegated_fingerprint\(\$f\) trusting (ed25519\/[0-9a-f]{64}) or client_cn\(\$c\), delegated_cn\(\$c\) trusting \2;)$/gm,
} as const;

/**
 * Every line an issued authority block may hold. A refresh re-mints from what it reads, so a line it does not
 * know (a restriction it would not carry over) refuses the refresh rather than being dropped.
 */
const KNOWN_LINES = [
  /^user\("[^"]*"\);$/,
  /^group\("[^"]*"\);$/,
  /^publish_right\("[^"]*"\);$/,
  /^idp_(?:issuer|subject)\("[^"]*"\);$/,
  /^check if time\(\$time\), \$time <= \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ;$/,
  ...Object.values(LINES).map((pattern) => new RegExp(pattern.source)),
];

/** The certificate binding line: its fingerprint and, for a delegable token, the delegation key. */
function bindingOf(source: string): { fingerprint: string; delegationKey?: string } | undefined {
  const matches = [...source.matchAll(LINES.fingerprint)];
  const [match] = matches;
  if (matches.length !== 1 || match?.[1] === undefined) return undefined;
  return { fingerprint: match[1], ...(match[2] !== undefined && { delegationKey: match[2] }) };
}

/** Reads the facts from the authority block's printed source; anything missing or doubled fails. */
export function issuedTokenFacts(source: string): IssuedFactsResult {
  const missing = (what: string): IssuedFactsResult => ({ ok: false, reason: `the token's authority block has no single ${what}: not a token issued after a login` });
  const unknown = source.split('\n').find((line) => line.trim() !== '' && !KNOWN_LINES.some((known) => known.test(line)));
  if (unknown !== undefined) return { ok: false, reason: `the token's authority block holds a line no issued token has: ${JSON.stringify(unknown.slice(0, 200))}` };
  const idp = idpOfAuthority(source);
  if (idp === undefined) return missing('idp_issuer and idp_subject');
  const id = singleFact(source, LINES.loginId);
  const time = singleFact(source, LINES.loginTime);
  const lifetime = singleFact(source, LINES.lifetime);
  if (id === undefined || time === undefined || lifetime === undefined) return missing('login_id, login_time and login_lifetime');
  const binding = bindingOf(source);
  if (binding === undefined) return missing('certificate binding (client_fingerprint)');
  const sessionEnds = [...source.matchAll(LINES.sessionEnd)];
  if (sessionEnds.length > 1) return missing('idp_session_end');
  const sessionEnd = sessionEnds[0]?.[1];
  const routeLines = [...source.matchAll(LINES.routes)];
  if (routeLines.length > 1) return missing('route restriction');
  const routes = routeLines[0]?.[1]?.split(', ').map((quoted) => quoted.slice(1, -1));
  const login: IssuedLogin = { id, time: new Date(time), lifetimeSeconds: Number(lifetime), ...(sessionEnd !== undefined && { idpSessionEnd: new Date(sessionEnd) }) };
  return {
    ok: true,
    facts: { idp, login, ...binding, ...(routes !== undefined && { routes }) },
  };
}
