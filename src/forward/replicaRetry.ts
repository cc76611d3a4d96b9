// Sending a request again, on another replica of a published service, when the replica it went to was lost
// before any of the answer came: only requests that are safe to repeat (RFC 9110 9.2.1) and carry no body.
import type { UpstreamOpener } from '../upstream/openUpstream.ts';
import type { UpstreamTarget } from '../upstream/upstreamTarget.ts';

/** Safe methods (RFC 9110 9.2.1): asking again asks nothing more of the service than asking once. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Sends after the first, at most: a service whose replicas keep going away is not chased through all of them. */
export const MAX_REPLICA_RETRIES = 2;

export interface ReplicaRetry {
  /** Whether this request may be sent again at all (a published upstream, a safe method, no body). */
  readonly possible: boolean;
  /** Where the request goes now: the replica changes with each retry. */
  readonly target: UpstreamTarget;
  /** The publishers lost under this request, oldest first (the record's `detail.retriedFrom`). */
  readonly lost: readonly string[];
  /**
   * The request failed before any of the answer reached the client: the next target if its replica is gone
   * (never when it is still there: a slow or failing service is not asked twice) and retries are left.
   */
  next(): UpstreamTarget | undefined;
}

export function replicaRetry(upstreams: Pick<UpstreamOpener, 'failover'>, first: UpstreamTarget, method: string, hasBody: boolean): ReplicaRetry {
  const lost: string[] = [];
  // A body was streamed to the lost replica as it came: it is not kept, so it could not be sent again.
  const possible = first.kind === 'published' && !hasBody && SAFE_METHODS.has(method);
  const retry = {
    possible,
    target: first,
    lost,
    next(): UpstreamTarget | undefined {
      if (!possible || lost.length >= MAX_REPLICA_RETRIES) return undefined;
      const next = upstreams.failover(retry.target);
      if (next === undefined) return undefined;
      lost.push(retry.target.via ?? '');
      retry.target = next;
      return next;
    },
  };
  return retry;
}
