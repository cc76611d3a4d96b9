// The one admission path every forwarder shares: normalize -> route -> authorize -> resolve upstream.
// HTTP, WebSocket and tunnels differ only in how they carry bytes afterwards.
import type { Protocol } from '../config/schema.ts';
import { auditTokenOf } from '../audit/auditToken.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';
import type { Decision, RequestAuthorizer, RequestFacts, RoutePolicy } from '../authz/types.ts';
import { normalizeTarget, encodePath } from '../routing/normalizePath.ts';
import { hostOnly, type CompiledRoute, type RouteTable } from '../routing/routeTable.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { UpstreamOpener } from '../upstream/openUpstream.ts';
import { fillTemplate, missingParam, type Template } from '../routing/template.ts';
import { parseUpstream, verifySocketOwner, type UpstreamCheck, type UpstreamTarget } from '../upstream/upstreamTarget.ts';

export interface AdmissionRequest {
  identity: PeerIdentity;
  sourceIp: string;
  protocol: Protocol;
  method?: string;
  hostHeader?: string;
  /** Origin-form request target for HTTP and WebSocket; for tunnels, `routeName` (the tunnel name) is used instead. */
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
      refusal: Refusal;
      route?: CompiledRoute;
      path?: string;
      decision?: Decision;
    };

/**
 * The route's upstream for this request: its `{param}` placeholders (template compiled at config load)
 * filled with the captures, which the route table already held to a safe alphabet, then read.
 */
export function resolveUpstream(template: Template, params: Record<string, string>): UpstreamCheck {
  // Hot path: most upstreams have no placeholder; theirs is read once per compiled route, not per request.
  if (template.names.length === 0) {
    let fixed = fixedUpstreams.get(template);
    if (fixed === undefined) fixedUpstreams.set(template, (fixed = parseUpstream(template.text)));
    return fixed;
  }
  const missing = missingParam(template, params);
  if (missing) return { ok: false, reason: `upstream template needs parameter ${missing}` };
  return parseUpstream(fillTemplate(template, params));
}

/** Upstreams without placeholders, read once per compiled template (a reload compiles new ones). */
const fixedUpstreams = new WeakMap<Template, UpstreamCheck>();

export interface AdmissionContext {
  routes: RouteTable;
  authorizer: RequestAuthorizer;
  /** What a policy may know about an upstream before it is opened (absent: nothing, as in `authz explain`). */
  upstreams?: Pick<UpstreamOpener, 'inspect'>;
}

/**
 * What the authorizer is told about a route, built once per compiled route (a reload compiles new
 * ones): the authorizer's decision cache then knows the route by identity instead of by its text.
 */
const policies = new WeakMap<CompiledRoute, RoutePolicy>();
function policyOf(route: CompiledRoute): RoutePolicy {
  let policy = policies.get(route);
  if (policy === undefined) {
    policy = { name: route.config.name, policy: route.config.policy, limits: route.limits };
    policies.set(route, policy);
  }
  return policy;
}

export async function admitRequest(ctx: AdmissionContext, req: AdmissionRequest): Promise<Admission> {
  let route: CompiledRoute | undefined;
  let params: Record<string, string> = {};
  let path: string | undefined;
  let upstreamTarget = '/';
  let strippedPrefix: string | undefined;

  if (req.routeName !== undefined) {
    const match = ctx.routes.tunnel(req.routeName, req.protocol);
    // A tunnel name is client input of any length: the record keeps a bounded piece of it.
    if (!match.ok) return { allow: false, refusal: refuse(match.status === 404 ? 'GH_NO_TUNNEL_ROUTE' : 'GH_BAD_TUNNEL_NAME', match.reason.length > 300 ? `${match.reason.slice(0, 300)}… (${req.routeName.length}-character name)` : match.reason) };
    route = match.route;
    params = match.params;
  } else {
    const normalized = normalizeTarget(req.target ?? '');
    if (!normalized.ok) return { allow: false, refusal: refuse('GH_BAD_PATH', normalized.reason) };
    path = normalized.path;
    const match = ctx.routes.match(req.hostHeader, normalized.segments, req.protocol);
    if (!match.ok) return { allow: false, refusal: refuse(match.status === 404 ? 'GH_NO_ROUTE' : 'GH_BAD_PATH', match.reason), path };
    route = match.route;
    params = match.params;
    const kept = route.config.stripPrefix ? match.rest : normalized.segments;
    upstreamTarget = encodePath(kept, normalized.trailingSlash || kept.length === 0) + normalized.query;
    if (route.config.stripPrefix && match.rest.length < normalized.segments.length) strippedPrefix = encodePath(normalized.segments.slice(0, normalized.segments.length - match.rest.length), false);
  }

  // The upstream is resolved before authorization only so a policy can see who publishes it; an
  // unauthorized caller learns nothing of it (its problems are reported only after an allow).
  const resolved = resolveUpstream(route.upstream, params);
  const inspected = resolved.ok && ctx.upstreams ? ctx.upstreams.inspect(resolved.target) : undefined;
  // Optional facts are set one by one (same order as before), not spread from temporary objects.
  const facts: RequestFacts = { time: new Date(), route: route.config.name, protocol: req.protocol, params, sourceIp: req.sourceIp, client: req.identity };
  if (req.method !== undefined) facts.method = req.method;
  // The host routing matched on (lowercase, no port), so a policy's host() sees what routing saw.
  if (req.hostHeader !== undefined) facts.host = hostOnly(req.hostHeader) ?? '';
  if (path !== undefined) facts.path = path;
  if (inspected?.publisherFingerprint !== undefined) facts.publisherFingerprint = inspected.publisherFingerprint;
  const decision = await ctx.authorizer.authorize(req.token, policyOf(route), facts);
  if (!decision.allow) return { allow: false, refusal: refusalOf(decision), route, decision, ...(path !== undefined && { path }) };

  // Only now, for an authorized caller, look at the upstream: an unauthorized one learns nothing about it.
  if (!resolved.ok) return { allow: false, refusal: refuse('GH_UPSTREAM_UNAVAILABLE', resolved.reason), route, decision, ...(path !== undefined && { path }) };
  const gone = inspected?.unavailable;
  if (gone) return { allow: false, refusal: refusalOf(gone), route, decision, ...(path !== undefined && { path }) };
  const found: UpstreamTarget = inspected?.target ?? resolved.target;
  const replies = route.config.unixgramReplies;
  const target: UpstreamTarget = found.kind === 'unixgram' && replies !== undefined ? { ...found, replies } : found;
  const owner = route.config.socketOwner;
  if (owner !== undefined && (target.kind === 'unix' || target.kind === 'unixgram')) {
    const check = await verifySocketOwner(target.path, params[owner] ?? '');
    if (!check.ok) return { allow: false, refusal: refuse('GH_UPSTREAM_UNAVAILABLE', check.reason), route, decision, ...(path !== undefined && { path }) };
    // A datagram flow checks the socket it opens, and any that replaces it under the flow, against this owner too.
    if (target.kind === 'unixgram') return { allow: true, route, params, upstream: { ...target, owner: params[owner] ?? '' }, upstreamTarget, path, decision };
  }
  // Carried by another instance: what was decided here travels with the relayed stream (it is not decided there again).
  if (target.kind === 'published' && target.relay) target.relay.decided = { identity: req.identity, source: req.sourceIp, route: route.config.name, protocol: req.protocol, user: decision.user, token: auditTokenOf(decision), ...(path !== undefined && { path }) };
  return { allow: true, route, params, upstream: target, upstreamTarget, path, decision, ...(strippedPrefix !== undefined && { strippedPrefix }) };
}
