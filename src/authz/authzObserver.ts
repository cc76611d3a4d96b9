// What the authorization stage reports as it works (for metrics): decisions with the path they took,
// cache lookups, worker memory and replacements. Every hook is optional.
import type { PoolObserver } from './engine/enginePool.ts';
import type { Decision } from './types.ts';

/**
 * early: refused before any token work (no token, list unavailable); cold: a worker verified the token;
 * token-cached: the token was known; decision-cached: a recent identical decision was reused.
 */
export type DecisionPath = 'early' | 'cold' | 'token-cached' | 'decision-cached';

export interface AuthzObserver extends PoolObserver {
  decided?(decision: Decision, path: DecisionPath, seconds: number): void;
  cacheLookup?(cache: 'token' | 'decision', hit: boolean): void;
}
