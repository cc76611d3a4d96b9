// The authorizer facts contract in one place: every predicate the gateway states (and for which
// requests), and the ones tokens carry. requestFacts.ts builds facts from these names; `gatehouse check` and
// `authz explain` read the same list, so what they say a policy can see is what the authorizer gives it.

/** The decisions facts are stated in: a request or tunnel of a route's protocol, or a publisher's registration. */
export type FactScope = 'http' | 'websocket' | 'tcp' | 'udp' | 'publish';

export interface GatewayFact {
  /** Number of terms. */
  arity: number;
  /** The decisions the gateway states it in. */
  scopes: readonly FactScope[];
  /** Stated only on routes whose upstream is `published:` (the publisher a request goes through). */
  publishedUpstream?: true;
  /** `name(example)`, as the reference shows it. */
  example: string;
}

const everywhere: readonly FactScope[] = ['http', 'websocket', 'tcp', 'udp', 'publish'];
const routes: readonly FactScope[] = ['http', 'websocket', 'tcp', 'udp'];
const requests: readonly FactScope[] = ['http', 'websocket'];

/** What the gateway states, predicate by predicate. */
export const gatewayFacts = {
  time: { arity: 1, scopes: everywhere, example: 'time(2026-11-24T10:00:00Z)' },
  route: { arity: 1, scopes: routes, example: 'route("user-services")' },
  protocol: { arity: 1, scopes: everywhere, example: 'protocol("http")' },
  method: { arity: 1, scopes: requests, example: 'method("GET")' },
  host: { arity: 1, scopes: requests, example: 'host("gw.example.org")' },
  path: { arity: 1, scopes: requests, example: 'path("/~alice/jupyter/api")' },
  param: { arity: 2, scopes: routes, example: 'param("user", "alice")' },
  source_ip: { arity: 1, scopes: everywhere, example: 'source_ip("203.0.113.7")' },
  client_cn: { arity: 1, scopes: everywhere, example: 'client_cn("alice")' },
  client_subject: { arity: 1, scopes: everywhere, example: 'client_subject("CN=alice,O=Site")' },
  client_serial: { arity: 1, scopes: everywhere, example: 'client_serial("5a94…")' },
  client_fingerprint: { arity: 1, scopes: everywhere, example: 'client_fingerprint("sha256:a15a…")' },
  client_issuer: { arity: 1, scopes: everywhere, example: 'client_issuer("CN=Site CA")' },
  client_san: { arity: 2, scopes: everywhere, example: 'client_san("email", "alice@example.org")' },
  service: { arity: 1, scopes: ['publish'], example: 'service("jupyter")' },
  publisher_fingerprint: { arity: 1, scopes: routes, publishedUpstream: true, example: 'publisher_fingerprint("sha256:…")' },
  /** Who signed the token: `root` (the administrator's root key) or a trusted issuer's name (authz.issuers). */
  signer: { arity: 1, scopes: everywhere, example: 'signer("root")' },
  token_blocks: { arity: 1, scopes: ['publish'], example: 'token_blocks(2)' },
  publish_granted: { arity: 2, scopes: ['publish'], example: 'publish_granted(1, "*")' },
} as const satisfies Record<string, GatewayFact>;

export type GatewayPredicate = keyof typeof gatewayFacts;

/** What tokens carry for policies to read: the authority block's user and groups and publish grants, a delegation block's holder. */
export const tokenFacts = {
  user: 'user("alice")',
  group: 'group("hpc")',
  publish_right: 'publish_right("*")',
  delegated_fingerprint: 'delegated_fingerprint("sha256:…")',
  delegated_cn: 'delegated_cn("bob")',
  idp_issuer: 'idp_issuer("https://idp.example.org/realms/site")',
  idp_subject: 'idp_subject("f2c9…")',
} as const;

/** The gateway's predicates stated in a decision of `scope` (`published`: the route's upstream is `published:`). */
export function predicatesIn(scopes: readonly FactScope[], published: boolean): GatewayPredicate[] {
  return (Object.keys(gatewayFacts) as GatewayPredicate[]).filter((name) => {
    const fact: GatewayFact = gatewayFacts[name];
    return fact.scopes.some((s) => scopes.includes(s)) && (!fact.publishedUpstream || published);
  });
}
