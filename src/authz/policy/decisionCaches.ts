// Main-thread caches in front of the engine workers: what a worker learned about a token (so invalid
// and revoked tokens are refused without a round trip) and recent decisions. Bounded; cleared together.
import { LRUCache } from 'lru-cache';
import type { PeerIdentity } from '../../tls/peerIdentity.ts';
import type { Decision, IssuedBy, RequestFacts, RoutePolicy, TokenBlock, TokenInfo } from '../types.ts';

export type TokenEntry =
  | {
      valid: true;
      /** Stands for the token bytes in decision keys. */
      id: number;
      revocationIds: string[];
      /** Earliest expiry stated by the token (ms since epoch): a decision is never cached past it. */
      expiresAt?: number;
      /** The token's user, once a decision named it (for attributing a later refusal). */
      user?: string;
      /** Multi-block tokens: what each block is, attached to every decision about the token. */
      blocks?: TokenBlock[];
      /** Tokens of a trusted issuer: its name and the IdP identity, attached like `blocks`. */
      issuedBy?: IssuedBy;
    }
  | { valid: false; reason: string };

export interface CacheSettings {
  /** Verified tokens kept (0 disables). */
  tokens: number;
  /** Decisions kept (0 disables). */
  decisions: number;
  /** Longest life of a cached decision in ms (0 disables). */
  decisionTtlMs: number;
}

export const defaultCacheSettings: CacheSettings = { tokens: 10_000, decisions: 10_000, decisionTtlMs: 1000 };

/** Characters of token text the token cache may hold (tokens are at most 16 KiB each). */
const maxTokenCharacters = 16 * 1024 * 1024;

export class DecisionCaches {
  readonly #tokens: LRUCache<string, TokenEntry> | undefined;
  readonly #decisions: LRUCache<string, Decision> | undefined;
  readonly #ttlMs: number;
  #nextId = 1;
  readonly #routeIds = new Map<string, number>();
  /** The same ids by policy object: admission hands over one object per route, so the text is built once. */
  readonly #routeIdsByPolicy = new WeakMap<RoutePolicy, number>();
  /** Certificate identities (one object per connection) -> a number for decision keys. */
  readonly #identityIds = new WeakMap<PeerIdentity, number>();
  readonly #identityByText = new Map<string, number>();

  constructor(settings: CacheSettings) {
    if (settings.tokens > 0) {
      this.#tokens = new LRUCache({ max: settings.tokens, maxSize: maxTokenCharacters, sizeCalculation: (_v: TokenEntry, key: string) => key.length + 256 });
    }
    this.#ttlMs = settings.decisionTtlMs;
    if (settings.decisions > 0 && settings.decisionTtlMs > 0) {
      this.#decisions = new LRUCache({ max: settings.decisions, ttl: settings.decisionTtlMs, ttlAutopurge: false });
    }
  }

  get decisionsEnabled(): boolean {
    return this.#decisions !== undefined;
  }

  token(token: string): TokenEntry | undefined {
    return this.#tokens?.get(token);
  }

  /** Records what a worker learned; returns the entry (also when the token cache is off). */
  rememberToken(token: string, info: TokenInfo): TokenEntry {
    const entry: TokenEntry = info.valid
      ? { valid: true, id: this.#nextId++, revocationIds: info.revocationIds, ...(info.expiresAt !== undefined && { expiresAt: info.expiresAt }), ...(info.blocks !== undefined && { blocks: info.blocks }), ...(info.issuedBy !== undefined && { issuedBy: info.issuedBy }) }
      : { valid: false, reason: info.reason };
    this.#tokens?.set(token, entry);
    return entry;
  }

  /** Token, route and every request fact except the time. */
  decisionKey(token: string, entry: TokenEntry | undefined, route: RoutePolicy, facts: RequestFacts): string {
    const tokenKey = entry?.valid ? `#${entry.id}` : token;
    return `${tokenKey}\u0000${this.#routeId(route)}\u0000${this.#identityId(facts.client)}\u0000${JSON.stringify([facts.route, facts.protocol, facts.method, facts.host, facts.path, facts.params, facts.sourceIp, facts.service, facts.publisherFingerprint])}`;
  }

  decision(key: string): Decision | undefined {
    return this.#decisions?.get(key);
  }

  /** Keeps a decision for the TTL, cut short by the token's expiry; "cannot decide" (503) and "too busy" (429) are never kept. */
  rememberDecision(key: string, decision: Decision, entry: TokenEntry | undefined, now = Date.now()): void {
    if (!this.#decisions || (!decision.allow && (decision.status === 503 || decision.status === 429))) return;
    let ttl = this.#ttlMs;
    if (entry?.valid && entry.expiresAt !== undefined) ttl = Math.min(ttl, entry.expiresAt - now);
    if (ttl < 1) return;
    this.#decisions.set(key, decision, { ttl });
  }

  clear(): void {
    this.#tokens?.clear();
    this.#decisions?.clear();
  }

  #routeId(route: RoutePolicy): number {
    const known = this.#routeIdsByPolicy.get(route);
    if (known !== undefined) return known;
    const key = `${route.name}\u0000${route.policy}\u0000${JSON.stringify(route.limits)}`;
    let id = this.#routeIds.get(key);
    if (id === undefined) {
      if (this.#routeIds.size >= 1024) this.#routeIds.clear();
      id = this.#routeIds.size + 1 + this.#nextId++;
      this.#routeIds.set(key, id);
    }
    this.#routeIdsByPolicy.set(route, id);
    return id;
  }

  /** Equal certificates get equal ids, whichever connection object carries them. */
  #identityId(identity: PeerIdentity): number {
    let id = this.#identityIds.get(identity);
    if (id === undefined) {
      const text = JSON.stringify(identity);
      id = this.#identityByText.get(text);
      if (id === undefined) {
        if (this.#identityByText.size >= 100_000) this.#identityByText.clear();
        id = this.#nextId++;
        this.#identityByText.set(text, id);
      }
      this.#identityIds.set(identity, id);
    }
    return id;
  }
}
