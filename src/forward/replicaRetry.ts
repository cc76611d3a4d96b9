// Sending a request again, or opening a tunnel again, on another replica of a published service, when the
// replica it went to was lost before any of the answer came: only what is safe to repeat (RFC 9110 9.2.1).
import type { StreamOptions, UpstreamConnection, UpstreamOpener } from '../upstream/openUpstream.ts';
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

function retryOn(upstreams: Pick<UpstreamOpener, 'failover'>, first: UpstreamTarget, repeatable: boolean): ReplicaRetry {
  const lost: string[] = [];
  const possible = first.kind === 'published' && repeatable;
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

export function replicaRetry(upstreams: Pick<UpstreamOpener, 'failover'>, first: UpstreamTarget, method: string, hasBody: boolean): ReplicaRetry {
  // A body was streamed to the lost replica as it came: it is not kept, so it could not be sent again.
  return retryOn(upstreams, first, !hasBody && SAFE_METHODS.has(method));
}

/**
 * Opens a tunnel's stream to `first`. A replica lost before it answered the open has been sent nothing of
 * the client's (its bytes flow only after the 200), so the open is repeated on another live replica.
 */
export async function openOnLiveReplica(upstreams: Pick<UpstreamOpener, 'open' | 'failover'>, first: UpstreamTarget, timeoutMs: number, options?: StreamOptions): Promise<{ opened: UpstreamConnection; retry: ReplicaRetry }> {
  const retry = retryOn(upstreams, first, true);
  // One connect timeout for the tunnel, however many replicas it is tried on.
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const opened = await upstreams.open(retry.target, Math.max(1, deadline - performance.now()), options);
    if (opened.ok || performance.now() >= deadline || retry.next() === undefined) return { opened, retry };
  }
}
