// `gatehouse authz explain`: the gateway's decision for one token, client certificate and request,
// made in-process with the same admission path (facts) and engine (policy, checks, revocation),
// reported with everything needed to understand it: facts, token blocks, matching policy, failing checks.
import type { GatewayConfig, Protocol } from '../config/schema.ts';
import { refuse } from '../errors/refusal.ts';
import { admitRequest } from './admitRequest.ts';
import { RouteTable } from '../routing/routeTable.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { readRevocationList } from '../token/revocationFile.ts';
import type { FailedCheck } from '../token/biscuitErrors.ts';
import { evaluateToken, revocationIdsOf, type EvaluationDetail } from '../authz/policy/evaluateToken.ts';
import { policyStatements } from '../authz/policy/policyStatements.ts';
import { requestFactList } from '../authz/policy/requestFacts.ts';
import { predicatesIn, tokenFacts } from '../authz/policy/factVocabulary.ts';
import { deadlineOf } from '../authz/requestAuthorizer.ts';
import { revokedDecision } from '../authz/policy/revokedDecision.ts';
import { parsePublicKey, readRootKey } from '../token/rootKey.ts';
import { trustedSigners, type TrustedSigners } from '../token/signers.ts';
import type { Decision, RequestFacts, RoutePolicy } from '../authz/types.ts';
import { warmUpEngine } from '../authz/engine/warmUp.ts';

export interface ExplainInput {
  config: GatewayConfig;
  route: string;
  token: string;
  client: PeerIdentity;
  method?: string;
  /** Request path (with query); without it the route is taken by name and path/param facts are absent. */
  path?: string;
  host?: string;
  /** Added to (or replacing) the captures of the path. */
  params?: Record<string, string>;
  sourceIp?: string;
  protocol?: Protocol;
  time?: Date;
}

export interface Explanation {
  route: string;
  policy: string[];
  /** `predicate(values)` as Datalog, values quoted for display. */
  facts: string[];
  /** Every fact this route's policy can see, by name: the gateway's for its protocols and upstream, and the token's. */
  routeFacts: { gateway: string[]; token: string[] };
  /** Block sources as biscuit prints them (display only: not escaped), when the token verified. */
  blocks: { index: number; revocationId: string; source: string }[];
  decision: Decision;
  matched?: string;
  failingChecks: FailedCheck[];
  /** Time the engine took, and the hard deadline the gateway would apply. */
  elapsedMs: number;
  deadlineMs: number;
  notes: string[];
}

export type ExplainResult = { ok: true; value: Explanation } | { ok: false; reason: string };

function literal(value: string | Date): string {
  return value instanceof Date ? value.toISOString().replace(/\.\d{3}Z$/, 'Z') : JSON.stringify(value);
}

function factLines(facts: RequestFacts): string[] {
  return requestFactList(facts).map(({ predicate, values }) => `${predicate}(${values.map(literal).join(', ')});`);
}

interface Engine {
  signers: TrustedSigners;
  scope: Record<string, string>;
  revoked: ReadonlySet<string>;
}

async function engineFor(config: GatewayConfig): Promise<{ ok: true; value: Engine } | { ok: false; reason: string }> {
  const root = await readRootKey(config.authz.rootKey);
  if (!root.ok) return { ok: false, reason: root.reason };
  const scope: Record<string, string> = {};
  for (const [name, text] of Object.entries(config.authz.externalKeys)) {
    const key = parsePublicKey(text, `external key ${name}`);
    if (!key.ok) return { ok: false, reason: key.reason };
    scope[name] = key.key.toDatalogParameter();
    key.key.free();
  }
  let revoked: ReadonlySet<string> = new Set();
  if (config.authz.revocationList !== undefined) {
    const list = readRevocationList(config.authz.revocationList);
    if (!list.ok) return { ok: false, reason: `revocation list unavailable (the gateway would answer 503): ${list.error.message}` };
    revoked = list.value;
  }
  const signers = trustedSigners({ root: root.key.toString(), issuers: config.authz.issuers });
  root.key.free();
  if (!signers.ok) return signers;
  return { ok: true, value: { signers: signers.signers, scope, revoked } };
}

export async function explainDecision(input: ExplainInput): Promise<ExplainResult> {
  const routes = new RouteTable(input.config.routes, input.config.authz.limits);
  const named = routes.byName(input.route);
  if (!named) return { ok: false, reason: `no route named ${JSON.stringify(input.route)} in the configuration` };
  const engine = await engineFor(input.config);
  if (!engine.ok) return engine;
  // Time a warm engine, as the gateway's workers are: the first call in a fresh process compiles code.
  warmUpEngine();
  const protocol = input.protocol ?? named.config.protocols[0] ?? 'http';

  let seen: { policy: RoutePolicy; facts: RequestFacts } | undefined;
  let explained: Omit<Explanation, 'route' | 'policy' | 'facts' | 'routeFacts' | 'deadlineMs' | 'notes'> | undefined;
  const authorizer = {
    async authorize(text: string | undefined, policy: RoutePolicy, admitted: RequestFacts): Promise<Decision> {
      const facts: RequestFacts = { ...admitted, ...(input.time && { time: input.time }), params: { ...admitted.params, ...input.params } };
      seen = { policy, facts };
      explained = decide(engine.value, text ?? '', policy, facts);
      return explained.decision;
    },
    close: async () => {},
  };
  await admitRequest(
    { routes, authorizer },
    {
      identity: input.client,
      sourceIp: input.sourceIp ?? '127.0.0.1',
      protocol,
      token: input.token,
      ...(input.method !== undefined && { method: input.method.toUpperCase() }),
      ...(input.host !== undefined && { hostHeader: input.host }),
      ...(input.path !== undefined ? { target: input.path } : { routeName: input.route }),
    },
  );
  if (!seen || !explained) return { ok: false, reason: input.path !== undefined ? `${input.path} does not reach route ${input.route} (no route matches it, or it is not a valid path)` : `route ${input.route} does not accept ${protocol}` };
  if (seen.policy.name !== input.route) return { ok: false, reason: `${input.path ?? ''} goes to route ${seen.policy.name}, not ${input.route}` };
  const notes: string[] = [];
  if (input.path === undefined) notes.push('no --path: path and param facts are absent (as for a tunnel)');
  const deadlineMs = deadlineOf(seen.policy.limits);
  if (explained.elapsedMs > deadlineMs) notes.push(`this took longer than the hard deadline: the gateway would deny it with "run limit exceeded"`);
  const routeFacts = { gateway: predicatesIn(named.config.protocols, named.config.upstream.startsWith('published:')), token: Object.keys(tokenFacts) };
  return { ok: true, value: { route: seen.policy.name, policy: policyStatements(seen.policy.policy), facts: factLines(seen.facts), routeFacts, ...explained, deadlineMs, notes } };
}

function decide(engine: Engine, text: string, policy: RoutePolicy, facts: RequestFacts): Omit<Explanation, 'route' | 'policy' | 'facts' | 'routeFacts' | 'deadlineMs' | 'notes'> {
  const started = performance.now();
  const done = (decision: Decision, rest: Partial<Explanation> = {}) => ({ decision, failingChecks: [], blocks: [], ...rest, elapsedMs: performance.now() - started });
  const signed = engine.signers.verify(text.trim());
  if (!signed.ok) return done({ allow: false, ...refuse('GH_TOKEN_INVALID', `token does not parse or verify: ${signed.reason}`) });
  const { token } = signed;
  facts.signer = signed.signer;
  try {
    const ids = revocationIdsOf(token);
    const blocks = ids.map((revocationId, index) => ({ index, revocationId, source: token.getBlockSource(index).trim() }));
    const revoked = revokedDecision(ids, engine.revoked);
    if (revoked) return done(revoked, { blocks });
    let detail: EvaluationDetail = {};
    const decision = evaluateToken(token, policy, facts, { scope: engine.scope, observe: (d) => (detail = { ...detail, ...d }) });
    const failingChecks = detail.failure && 'checks' in detail.failure ? detail.failure.checks : [];
    return done(decision, { blocks, failingChecks, ...(decision.allow && { matched: decision.matched }) });
  } finally {
    token.free();
  }
}
