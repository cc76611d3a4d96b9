// The authorization engine: a pure function of (verified token, request facts, route policy, limits)
// to a Decision. Holds no state, so it runs in the engine workers that each own a biscuit-wasm instance.
import { refuse, type Refusal } from '../../errors/refusal.ts';
import { AuthorizerBuilder, Rule, type Authorizer, type Biscuit } from '@biscuit-auth/biscuit-wasm';
import { biscuitErrorText, classifyFailure, isWasmTrap, type FailedCheck, type Failure } from '../../token/biscuitErrors.ts';
import { policyStatements } from './policyStatements.ts';
import { addPublishChainFacts, publishRightOf } from './publishChain.ts';
import { addRequestFacts } from './requestFacts.ts';
import type { Decision, RequestFacts, RoutePolicy } from '../types.ts';

type Denial = Extract<Decision, { allow: false }>;

interface WasmLimits {
  max_facts: number;
  max_iterations: number;
  max_time_micro: number;
}

/**
 * What biscuit-wasm 0.6.0 actually enforces while deriving facts, whatever authorizeWithLimits is given
 * (measured): its own defaults, with the time checked only between rule iterations, so one iteration
 * (a join in a token block) can run for seconds. The gateway's hard deadline (limits.deadlineMs) is
 * what bounds a call; see engine/enginePool.ts.
 */
export const engineLimits = 'derivation capped by biscuit-wasm at 1000 facts, 100 iterations, 1 ms checked between iterations';

/** Options of one evaluation. */
export interface EvaluateOptions {
  /** Scope parameters for `trusting {name}` in route policies: name -> `ed25519/<hex>` (validated). */
  scope?: Record<string, string>;
  /** Told how the run ended, for `authz explain` and for the worker's health. */
  observe?: (detail: EvaluationDetail) => void;
}

export interface EvaluationDetail {
  /** Index of the allow policy that matched. */
  policyIndex?: number;
  failure?: Failure;
  /** biscuit-wasm trapped (a Rust panic): its state can no longer be trusted. */
  fault?: boolean;
}

/** Identity facts are read from the authority block only: later blocks are written by whoever holds the token. */
const userQuery = 'u($u) <- user($u) trusting authority';
const groupQuery = 'g($g) <- group($g) trusting authority';

/** The token's revocation ids, block 0 first, lowercase hex. */
export function revocationIdsOf(token: Biscuit): string[] {
  return token.getRevocationIdentifiers().map((id: unknown) => String(id).toLowerCase());
}

function unavailable(reason: string, extra: Partial<Denial> = {}): Denial {
  return { allow: false, ...refuse('GH_AUTHZ_UNAVAILABLE', reason), ...extra };
}

/** Parsed once per thread and reused: parsing a rule per call costs WebAssembly memory that is never returned. */
const queries = new Map<string, Rule>();

/** String values of the one-term facts a query returns; the Fact objects are freed. */
function queryStrings(authorizer: Authorizer, rule: string, limits: WasmLimits): string[] {
  let query = queries.get(rule);
  if (query === undefined) {
    query = Rule.fromString(rule);
    queries.set(rule, query);
  }
  const facts: unknown[] = authorizer.queryWithLimits(query, limits);
  const values: string[] = [];
  for (const fact of facts as { terms(): unknown[]; free(): void }[]) {
    const [term] = fact.terms();
    if (typeof term === 'string') values.push(term);
    fact.free();
  }
  return [...new Set(values)].sort();
}

function usersOf(authorizer: Authorizer, limits: WasmLimits): string[] | undefined {
  try {
    return queryStrings(authorizer, userQuery, limits);
  } catch {
    return undefined;
  }
}

/** Failing checks named in a reason; each rule is already cut where it left the engine (biscuitErrors.ts). */
const LISTED_CHECKS = 8;

function describeChecks(checks: FailedCheck[]): string {
  const listed = checks.slice(0, LISTED_CHECKS).map((c) => `${c.origin}: ${c.rule}`).join('; ');
  return checks.length > LISTED_CHECKS ? `${listed}; and ${checks.length - LISTED_CHECKS} more` : listed;
}

/** Route policies split into statements, remembered per policy text (a handful of routes). */
const statementsByPolicy = new Map<string, string[]>();

function policyText(route: RoutePolicy, index: number): string {
  let statements = statementsByPolicy.get(route.policy);
  if (statements === undefined) {
    if (statementsByPolicy.size >= 256) statementsByPolicy.clear();
    statements = policyStatements(route.policy);
    statementsByPolicy.set(route.policy, statements);
  }
  return statements[index] ?? `policy #${index} of route ${route.name}`;
}

/** The user named by the authority block (for attributing a refused token), without running any policy. */
export function authorityUser(token: Biscuit): string | undefined {
  let authorizer: Authorizer;
  try {
    authorizer = new AuthorizerBuilder().buildAuthenticated(token);
  } catch {
    return undefined;
  }
  try {
    const users = usersOf(authorizer, { max_facts: 1000, max_iterations: 100, max_time_micro: 10_000 });
    return users?.length === 1 ? users[0] : undefined;
  } finally {
    authorizer.free();
  }
}

/** Short client reason and full audit reason for a failed authorization. */
function explain(failure: Failure, route: RoutePolicy): Refusal {
  // biscuit-wasm 0.6.0 derives facts with its own fixed limits; the route's time limit bounds checks and policies.
  const limits = `engine limits ${engineLimits}; route maxTimeMicros=${route.limits.maxTimeMicros}`;
  switch (failure.kind) {
    case 'no-matching-policy':
    case 'unauthorized': {
      const checks = failure.checks.length > 0 ? `failing checks: ${describeChecks(failure.checks)}` : '';
      const expired = failure.checks.some((c) => c.fromToken && /\btime\s*\(/.test(c.rule));
      let reason: string;
      if (failure.kind === 'no-matching-policy') {
        reason = `route ${route.name}: no allow policy matched${checks ? `; ${checks}` : ''}`;
      } else if (!failure.policy.allow) {
        reason = `route ${route.name}: deny policy matched: ${policyText(route, failure.policy.index)}${checks ? `; ${checks}` : ''}`;
      } else {
        reason = `route ${route.name}: ${checks} (allow policy ${policyText(route, failure.policy.index)} matched)`;
      }
      const denyMatched = failure.kind === 'unauthorized' && !failure.policy.allow;
      return refuse(expired && !denyMatched ? 'GH_TOKEN_EXPIRED' : 'GH_DENIED', reason);
    }
    case 'run-limit':
      return refuse('GH_RUN_LIMIT', `route ${route.name}: run limit exceeded: ${failure.detail} (${limits})`);
    case 'execution':
      return refuse('GH_POLICY_ERROR', `route ${route.name}: Datalog evaluation error: ${failure.detail}`);
    case 'other':
      return refuse('GH_TOKEN_REJECTED', `route ${route.name}: authorization failed: ${failure.detail}`);
  }
}

/** The one user the token names, or the refusal when its authority block names none or several. */
function singleUser(users: string[], route: RoutePolicy, revocationIds: string[]): string | Decision {
  const [user] = users;
  if (user !== undefined && users.length === 1) return user;
  const code = user === undefined ? 'GH_TOKEN_NO_USER' : 'GH_TOKEN_MANY_USERS';
  const reason = user === undefined
    ? 'the authority block has no user("name") fact'
    : `the authority block names several users: ${users.map((u) => JSON.stringify(u)).join(', ')}`;
  return { allow: false, ...refuse(code, `route ${route.name}: ${reason}`), revocationIds };
}

/**
 * Runs the route policy against a token whose signature (and revocation) has already been checked.
 * Never throws: an unexpected error becomes a 503 decision.
 */
export function evaluateToken(token: Biscuit, route: RoutePolicy, facts: RequestFacts, options: EvaluateOptions = {}, attempt = 1): Decision {
  let revocationIds: string[] = [];
  // A trap (Rust panic) leaves biscuit-wasm in an unknown state: say so, and answer "cannot decide".
  const trapped = (error: unknown): boolean => {
    if (!isWasmTrap(error)) return false;
    options.observe?.({ fault: true });
    return true;
  };
  try {
    revocationIds = revocationIdsOf(token);
    const limits: WasmLimits = {
      max_facts: route.limits.maxFacts,
      max_iterations: route.limits.maxIterations,
      max_time_micro: route.limits.maxTimeMicros,
    };
    // Publishing needs the right in every block of the token, whatever the site's policy says.
    const publishRight = facts.protocol === 'publish' ? publishRightOf(token, facts.service) : undefined;
    if (publishRight && !publishRight.ok) {
      const user = authorityUser(token);
      return { allow: false, ...refuse('GH_NO_PUBLISH_RIGHT', `route ${route.name}: ${publishRight.reason}`), revocationIds, ...(user !== undefined && { user }) };
    }
    const builder = new AuthorizerBuilder();
    try {
      addRequestFacts(builder, facts);
      if (publishRight) addPublishChainFacts(builder, publishRight);
      // Scope parameters only: a `{name}` in a term position stays unfilled and fails to compile.
      builder.addCodeWithParameters(route.policy, {}, options.scope ?? {});
    } catch (error) {
      if (trapped(error)) throw error;
      builder.free();
      return unavailable(`route ${route.name}: policy does not compile: ${biscuitErrorText(error)}`, { revocationIds });
    }

    let authorizer: Authorizer;
    try {
      // Consumes the builder, whether it succeeds or not: it must not be freed after this.
      authorizer = builder.buildAuthenticated(token);
    } catch (error) {
      if (trapped(error)) throw error;
      return { allow: false, ...refuse('GH_TOKEN_REJECTED', `route ${route.name}: token cannot be loaded: ${biscuitErrorText(error)}`), revocationIds };
    }

    let released = false;
    try {
      let index: number;
      try {
        index = authorizer.authorizeWithLimits(limits);
      } catch (error) {
        if (trapped(error)) throw error;
        const failure = classifyFailure(error);
        // The fixed 1 ms derivation budget also trips when this thread was merely preempted (GC, a busy
        // machine): try once more before denying. A really heavy token fails again, within the deadline.
        if (attempt === 1 && failure.kind === 'run-limit' && failure.detail.includes('Timeout')) {
          authorizer.free();
          released = true;
          return evaluateToken(token, route, facts, options, 2);
        }
        options.observe?.({ failure });
        const users = usersOf(authorizer, limits);
        const user = users?.length === 1 ? users[0] : undefined;
        return { allow: false, ...explain(failure, route), revocationIds, ...(user !== undefined && { user }) };
      }
      options.observe?.({ policyIndex: index });
      const user = singleUser(queryStrings(authorizer, userQuery, limits), route, revocationIds);
      if (typeof user !== 'string') return user;
      const groups = queryStrings(authorizer, groupQuery, limits);
      return { allow: true, user, groups, revocationIds, matched: policyText(route, index) };
    } finally {
      if (!released) authorizer.free();
    }
  } catch (error) {
    if (isWasmTrap(error)) options.observe?.({ fault: true });
    return unavailable(`route ${route.name}: unexpected authorization error: ${biscuitErrorText(error)}`, { revocationIds });
  }
}
