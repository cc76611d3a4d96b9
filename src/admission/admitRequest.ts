// The one admission path every forwarder shares: normalize -> route -> authorize -> resolve upstream.
// HTTP, WebSocket and tunnels differ only in how they carry bytes afterwards.
import type { Protocol } from '../config/schema.ts';
import type { Decision, RequestAuthorizer, RequestFacts } from '../authz/types.ts';
import { normalizeTarget, encodePath } from '../routing/normalizePath.ts';
import { hostOnly, type CompiledRoute, type RouteTable } from '../routing/routeTable.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { resolveUpstream, verifySocketOwner, type UpstreamTarget } from '../upstream/upstreamTarget.ts';

export interface AdmissionRequest {
  identity: PeerIdentity;
  sourceIp: string;
  protocol: Protocol;
  method?: string;
  hostHeader?: string;
  /** Origin-form request target for HTTP and WebSocket; for tunnels, `routeName` is used instead. */
  target?: string;
  routeName?: string;
  token: string | undefined;
}

export type Admission =
  | {
      allow: true;
      route: CompiledRoute;
      params: Record<string, string>;
      upstream: UpstreamTarget;
      /** Request target for the upstream (prefix stripped if the route says so, re-encoded, with query). */
      upstreamTarget: string;
      /** The prefix the route stripped (`/~alice/jupyter`), so responses can be put back under it. */
      strippedPrefix?: string;
      path: string | undefined;
      decision: Extract<Decision, { allow: true }>;
    }
  | {
      allow: false;
      status: number;
      clientReason: string;
      reason: string;
      route?: CompiledRoute;
      path?: string;
      decision?: Decision;
    };

export interface AdmissionContext {
  routes: RouteTable;
  authorizer: RequestAuthorizer;
}

export async function admitRequest(ctx: AdmissionContext, req: AdmissionRequest): Promise<Admission> {
  let route: CompiledRoute | undefined;
  let params: Record<string, string> = {};
  let path: string | undefined;
  let upstreamTarget = '/';
  let strippedPrefix: string | undefined;

  if (req.routeName !== undefined) {
    route = ctx.routes.byName(req.routeName);
    if (!route || !route.config.protocols.includes(req.protocol)) {
      return { allow: false, status: 404, clientReason: 'no such route', reason: `no ${req.protocol} route named ${JSON.stringify(req.routeName.slice(0, 100))}${req.routeName.length > 100 ? ` (${req.routeName.length} characters)` : ''}` };
    }
  } else {
    const normalized = normalizeTarget(req.target ?? '');
    if (!normalized.ok) return { allow: false, status: 400, clientReason: 'invalid request path', reason: normalized.reason };
    path = normalized.path;
    const match = ctx.routes.match(req.hostHeader, normalized.segments, req.protocol);
    if (!match.ok) {
      const clientReason = match.status === 404 ? 'no route' : 'invalid request path';
      return { allow: false, status: match.status, clientReason, reason: match.reason, path };
    }
    route = match.route;
    params = match.params;
    const kept = route.config.stripPrefix ? match.rest : normalized.segments;
    upstreamTarget = encodePath(kept, normalized.trailingSlash || kept.length === 0) + normalized.query;
    if (route.config.stripPrefix && match.rest.length < normalized.segments.length) strippedPrefix = encodePath(normalized.segments.slice(0, normalized.segments.length - match.rest.length), false);
  }

  const facts: RequestFacts = {
    time: new Date(),
    route: route.config.name,
    protocol: req.protocol,
    params,
    sourceIp: req.sourceIp,
    client: req.identity,
    ...(req.method !== undefined && { method: req.method }),
    // The host routing matched on (lowercase, no port), so a policy's host() sees what routing saw.
    ...(req.hostHeader !== undefined && { host: hostOnly(req.hostHeader) ?? '' }),
    ...(path !== undefined && { path }),
  };
  const policy = { name: route.config.name, policy: route.config.policy, limits: route.limits };
  const decision = await ctx.authorizer.authorize(req.token, policy, facts);
  if (!decision.allow) {
    return { allow: false, status: decision.status, clientReason: decision.clientReason, reason: decision.reason, route, decision, ...(path !== undefined && { path }) };
  }

  // Only now, for an authorized caller, look at the upstream: an unauthorized one learns nothing about it.
  const resolved = resolveUpstream(route.config.upstream, params);
  if (!resolved.ok) return { allow: false, status: 502, clientReason: 'upstream unavailable', reason: resolved.reason, route, decision, ...(path !== undefined && { path }) };
  const owner = route.config.socketOwner;
  if (owner !== undefined && resolved.target.kind === 'unix') {
    const check = await verifySocketOwner(resolved.target.path, params[owner] ?? '');
    if (!check.ok) return { allow: false, status: 502, clientReason: 'upstream unavailable', reason: check.reason, route, decision, ...(path !== undefined && { path }) };
  }
  return { allow: true, route, params, upstream: resolved.target, upstreamTarget, path, decision, ...(strippedPrefix !== undefined && { strippedPrefix }) };
}
