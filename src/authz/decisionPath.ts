// One authorization on the main thread: early refusals (revocation list unreadable, no token, too long),
// the caches, the revocation list and the deadline quarantine, then a worker; a decision already being made is shared.
import { refuse } from '../errors/refusal.ts';
import type { TokenEntry, DecisionCaches } from './policy/decisionCaches.ts';
import type { AuthzObserver, DecisionPath } from './authzObserver.ts';
import type { EnginePool } from './engine/enginePool.ts';
import { engineLimits } from './policy/evaluateToken.ts';
import type { RevocationState } from './policy/revocationState.ts';
import { revokedDecision, type Denial } from './policy/revokedDecision.ts';
import type { Decision, RequestFacts, RoutePolicy } from './types.ts';
import { readTokenEnvelope } from '../token/tokenEnvelope.ts';

/** Longest token accepted, in characters of base64url; a real token is well under 2 KiB. */
const maxTokenLength = 16 * 1024;
/** A decision and the path that produced it (for metrics). */
export type Outcome = { decision: Decision; path: DecisionPath };

/** Hard deadline of one authorization when the route sets none: 100 ms, or twice maxTimeMicros if longer. */
export function deadlineOf(limits: RoutePolicy['limits']): number {
  return limits.deadlineMs ?? Math.max(100, Math.ceil((2 * limits.maxTimeMicros) / 1000));
}
/** A token family (same authority block) that ran into the hard deadline is refused this long. */
const quarantineMs = 10_000;

/** What one authorizer's decisions share: its caches, revocation list, engine and the decisions in flight. */
export interface DecisionContext {
  caches: DecisionCaches;
  revocations: RevocationState;
  engine: EnginePool;
  observer: AuthzObserver;
  /** Token families (authority revocation id) that hit the hard deadline, until when. */
  quarantined: Map<string, number>;
  inflight: Map<string, Promise<Decision>>;
}

/** The authority block's revocation id: verified when the token is known, else read from the envelope. */
function familyOf(token: string, entry: TokenEntry | undefined): string | undefined {
  if (entry?.valid) return entry.revocationIds[0];
  const envelope = readTokenEnvelope(token);
  return envelope.ok ? envelope.value.revocationIds[0] : undefined;
}

/** Attaches the token's block descriptions and issuer (kept once per token in the cache) to a decision about it. */
function withBlocks<D extends Decision>(decision: D, entry: TokenEntry | undefined): D {
  if (!entry?.valid) return decision;
  const blocks = entry.blocks !== undefined && decision.blocks === undefined;
  const issuedBy = entry.issuedBy !== undefined && decision.issuedBy === undefined;
  // Most tokens (root-signed, one block) have neither: the decision is returned as it is, no copy.
  return blocks || issuedBy ? { ...decision, ...(blocks && { blocks: entry.blocks }), ...(issuedBy && { issuedBy: entry.issuedBy }) } : decision;
}

function runLimit(route: RoutePolicy, detail: string, entry: TokenEntry | undefined): Denial {
  const denial: Denial = { allow: false, ...refuse('GH_RUN_LIMIT', `route ${route.name}: run limit exceeded: ${detail}`) };
  if (!entry?.valid) return denial;
  return withBlocks({ ...denial, revocationIds: entry.revocationIds, ...(entry.user !== undefined && { user: entry.user }) }, entry);
}

async function decideInWorker(ctx: DecisionContext, token: string, entry: TokenEntry | undefined, route: RoutePolicy, facts: RequestFacts): Promise<{ decision: Decision; entry: TokenEntry | undefined }> {
  const deadlineMs = deadlineOf(route.limits);
  // Queued and charged per client certificate: one certificate's expensive tokens wait behind each other.
  const outcome = await ctx.engine.run({ party: facts.client.fingerprint, token, route, facts, wantInfo: entry === undefined, deadlineMs });
  if (outcome.kind === 'busy') {
    return { decision: { allow: false, ...refuse('GH_RATE_LIMITED', `route ${route.name}: ${outcome.reason}`) }, entry };
  }
  if (outcome.kind === 'unavailable') {
    return { decision: { allow: false, ...refuse('GH_AUTHZ_UNAVAILABLE', `route ${route.name}: ${outcome.reason}`) }, entry };
  }
  if (outcome.kind === 'deadline') {
    const known = outcome.info ? ctx.caches.rememberToken(token, outcome.info) : entry;
    const family = known?.valid ? known.revocationIds[0] : undefined;
    if (family !== undefined) {
      if (ctx.quarantined.size >= 1000) ctx.quarantined.clear();
      ctx.quarantined.set(family, Date.now() + quarantineMs);
    }
    const cpu = outcome.cpuMs !== undefined ? `, computing for ${Math.round(outcome.cpuMs)} ms of the last check` : '';
    const detail = `no decision within the hard deadline of ${deadlineMs} ms (ran ${Math.round(outcome.elapsedMs)} ms${cpu}; the worker was stopped and replaced; ${engineLimits})`;
    return { decision: runLimit(route, detail, known), entry: known };
  }
  let known = entry;
  if (outcome.info) known = ctx.caches.rememberToken(token, outcome.info);
  const decision = withBlocks(known?.valid && outcome.decision.revocationIds?.length === 0 ? { ...outcome.decision, revocationIds: known.revocationIds } : outcome.decision, known);
  if (known?.valid && !decision.allow && decision.user === undefined && known.user !== undefined) return { decision: { ...decision, user: known.user }, entry: known };
  if (known?.valid && decision.user !== undefined) known.user = decision.user;
  return { decision, entry: known };
}

/**
 * Decides from the caches when it can, synchronously (most requests: a cached decision), and
 * returns a promise only when a worker (or a decision already being made) is waited for.
 */
function authorizeNow(ctx: DecisionContext, token: string | undefined, route: RoutePolicy, facts: RequestFacts): Outcome | Promise<Outcome> {
  const status = ctx.revocations.status();
  if (status.kind === 'unavailable') {
    return { decision: { allow: false, ...refuse('GH_AUTHZ_UNAVAILABLE', status.reason) }, path: 'early' };
  }
  if (token === undefined || token.trim() === '') {
    return { decision: { allow: false, ...refuse('GH_TOKEN_MISSING', 'no Authorization: Bearer token') }, path: 'early' };
  }
  if (token.length > maxTokenLength) {
    return { decision: { allow: false, ...refuse('GH_TOKEN_INVALID', `token is ${token.length} characters, more than the ${maxTokenLength} allowed`) }, path: 'early' };
  }
  const text = token.trim();
  const entry = ctx.caches.token(text);
  ctx.observer.cacheLookup?.('token', entry !== undefined);
  if (entry && !entry.valid) {
    return { decision: { allow: false, ...refuse('GH_TOKEN_INVALID', entry.reason) }, path: 'token-cached' };
  }
  if (entry) {
    const revoked = status.kind === 'loaded' ? revokedDecision(entry.revocationIds, status.ids, entry.user) : undefined;
    if (revoked) return { decision: withBlocks(revoked, entry), path: 'token-cached' };
  }
  if (ctx.quarantined.size > 0) {
    // A new token of a ctx.quarantined family is known by its authority block's id, read without
    // verifying: refusing a forged copy is harmless, and a real family member carries the real id.
    const family = familyOf(text, entry);
    const until = ctx.quarantined.get(family ?? '');
    if (until !== undefined && until > Date.now()) {
      const detail = `a token of this family (authority block ${family}) ran past the hard deadline less than ${quarantineMs / 1000} s ago`;
      return { decision: runLimit(route, detail, entry), path: entry ? 'token-cached' : 'early' };
    }
  }

  const key = ctx.caches.decisionsEnabled ? ctx.caches.decisionKey(text, entry, route, facts) : undefined;
  if (key !== undefined) {
    const cached = ctx.caches.decision(key);
    ctx.observer.cacheLookup?.('decision', cached !== undefined);
    if (cached) return { decision: cached, path: 'decision-cached' };
    const running = ctx.inflight.get(key);
    if (running) return running.then((decision) => ({ decision, path: 'decision-cached' }));
  }

  const work = decideInWorker(ctx, text, entry, route, facts).then(({ decision, entry: known }) => {
    // A token first seen now is checked against the list here too (the worker had its own copy).
    const current = ctx.revocations.status();
    if (known?.valid && current.kind === 'loaded' && decision.allow) {
      const revoked = revokedDecision(known.revocationIds, current.ids, decision.user);
      if (revoked) return withBlocks(revoked, known);
    }
    if (key !== undefined && known?.valid) ctx.caches.rememberDecision(entry ? key : ctx.caches.decisionKey(text, known, route, facts), decision, known);
    return decision;
  });
  if (key !== undefined) {
    ctx.inflight.set(key, work);
    void work.finally(() => ctx.inflight.delete(key));
  }
  const path: DecisionPath = entry ? 'token-cached' : 'cold';
  return work.then((decision) => ({ decision, path }));
}

/** One authorization, never rejected: an unexpected error is a 503 decision; every decision is reported. */
export function authorize(ctx: DecisionContext, token: string | undefined, route: RoutePolicy, facts: RequestFacts): Promise<Decision> {
  const started = performance.now();
  const unexpected = (error: unknown): Outcome => {
    const reason = `unexpected authorization error: ${error instanceof Error ? error.message : String(error)}`;
    return { decision: { allow: false, ...refuse('GH_AUTHZ_UNAVAILABLE', reason) }, path: 'cold' };
  };
  const decided = (result: Outcome): Decision => {
    ctx.observer.decided?.(result.decision, result.path, (performance.now() - started) / 1000);
    return result.decision;
  };
  let outcome: Outcome | Promise<Outcome>;
  try {
    outcome = authorizeNow(ctx, token, route, facts);
  } catch (error) {
    outcome = unexpected(error);
  }
  // A decision from the caches resolves at once: no chain of promises for the common case.
  return outcome instanceof Promise ? outcome.catch(unexpected).then(decided) : Promise.resolve(decided(outcome));
}
