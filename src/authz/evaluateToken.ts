// The authorization engine: a pure function of (verified token, request facts, route policy, limits)
// to a Decision. Holds no state, so it can run in a worker that owns its own biscuit-wasm instance.
import { AuthorizerBuilder, Rule, type Authorizer, type Biscuit } from '@biscuit-auth/biscuit-wasm';
import { biscuitErrorText, classifyFailure, type FailedCheck, type Failure } from './biscuitErrors.ts';
import { policyStatements } from './policyStatements.ts';
import { requestFactsCode } from './requestFactsCode.ts';
import type { Decision, RequestFacts, RoutePolicy } from './types.ts';

type Denial = Extract<Decision, { allow: false }>;

interface WasmLimits {
  max_facts: number;
  max_iterations: number;
  max_time_micro: number;
}

/**
 * What biscuit-wasm 0.6.0 actually enforces while deriving facts, whatever authorizeWithLimits is given
 * (measured): the library defaults, with the time checked only between rule iterations.
 */
const engineLimits = 'maxFacts=1000 maxIterations=100 1ms between iterations';

/** Identity facts are read from the authority block only: later blocks are written by whoever holds the token. */
const userQuery = 'u($u) <- user($u) trusting authority';
const groupQuery = 'g($g) <- group($g) trusting authority';

/** The token's revocation ids, block 0 first, lowercase hex. */
export function revocationIdsOf(token: Biscuit): string[] {
  return token.getRevocationIdentifiers().map((id: unknown) => String(id).toLowerCase());
}

function unavailable(reason: string, extra: Partial<Denial> = {}): Denial {
  return { allow: false, status: 503, clientReason: 'authorization unavailable', reason, ...extra };
}

/** String values of the one-term facts a query returns; the Fact objects are freed. */
function queryStrings(authorizer: Authorizer, rule: string, limits: WasmLimits): string[] {
  const query = Rule.fromString(rule);
  try {
    const facts: unknown[] = authorizer.queryWithLimits(query, limits);
    const values: string[] = [];
    for (const fact of facts as { terms(): unknown[]; free(): void }[]) {
      const [term] = fact.terms();
      if (typeof term === 'string') values.push(term);
      fact.free();
    }
    return [...new Set(values)].sort();
  } finally {
    query.free();
  }
}

function usersOf(authorizer: Authorizer, limits: WasmLimits): string[] | undefined {
  try {
    return queryStrings(authorizer, userQuery, limits);
  } catch {
    return undefined;
  }
}

function describeChecks(checks: FailedCheck[]): string {
  return checks.map((c) => `${c.origin}: ${c.rule}`).join('; ');
}

function policyText(route: RoutePolicy, index: number): string {
  return policyStatements(route.policy)[index] ?? `policy #${index} of route ${route.name}`;
}

/** Short client reason and full audit reason for a failed authorization. */
function explain(failure: Failure, route: RoutePolicy): { clientReason: string; reason: string } {
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
      return { clientReason: expired && !denyMatched ? 'token expired' : 'denied by policy', reason };
    }
    case 'run-limit':
      return { clientReason: 'run limit exceeded', reason: `route ${route.name}: run limit exceeded: ${failure.detail} (${limits})` };
    case 'execution':
      return { clientReason: 'policy evaluation failed', reason: `route ${route.name}: Datalog evaluation error: ${failure.detail}` };
    case 'other':
      return { clientReason: 'token rejected', reason: `route ${route.name}: authorization failed: ${failure.detail}` };
  }
}

/**
 * Runs the route policy against a token whose signature (and revocation) has already been checked.
 * Never throws: an unexpected error becomes a 503 decision.
 */
export function evaluateToken(token: Biscuit, route: RoutePolicy, facts: RequestFacts): Decision {
  let revocationIds: string[] = [];
  try {
    revocationIds = revocationIdsOf(token);
    const limits: WasmLimits = {
      max_facts: route.limits.maxFacts,
      max_iterations: route.limits.maxIterations,
      max_time_micro: route.limits.maxTimeMicros,
    };
    const code = requestFactsCode(facts);

    const builder = new AuthorizerBuilder();
    try {
      builder.addCodeWithParameters(code.source, code.parameters, {});
      builder.addCode(route.policy);
    } catch (error) {
      builder.free();
      return unavailable(`route ${route.name}: policy does not compile: ${biscuitErrorText(error)}`, { revocationIds });
    }

    let authorizer: Authorizer;
    try {
      // Consumes the builder, whether it succeeds or not: it must not be freed after this.
      authorizer = builder.buildAuthenticated(token);
    } catch (error) {
      return { allow: false, status: 403, clientReason: 'token rejected', reason: `route ${route.name}: token cannot be loaded: ${biscuitErrorText(error)}`, revocationIds };
    }

    try {
      let index: number;
      try {
        index = authorizer.authorizeWithLimits(limits);
      } catch (error) {
        const users = usersOf(authorizer, limits);
        const user = users?.length === 1 ? users[0] : undefined;
        return { allow: false, status: 403, ...explain(classifyFailure(error), route), revocationIds, ...(user !== undefined && { user }) };
      }
      const users = queryStrings(authorizer, userQuery, limits);
      const [user] = users;
      if (user === undefined || users.length !== 1) {
        const clientReason = user === undefined ? 'token names no user' : 'token names more than one user';
        const reason = user === undefined
          ? 'the authority block has no user("name") fact'
          : `the authority block names several users: ${users.map((u) => JSON.stringify(u)).join(', ')}`;
        return { allow: false, status: 403, clientReason, reason: `route ${route.name}: ${reason}`, revocationIds };
      }
      const groups = queryStrings(authorizer, groupQuery, limits);
      return { allow: true, user, groups, revocationIds, matched: policyText(route, index) };
    } finally {
      authorizer.free();
    }
  } catch (error) {
    return unavailable(`route ${route.name}: unexpected authorization error: ${biscuitErrorText(error)}`, { revocationIds });
  }
}
