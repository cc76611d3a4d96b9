// The route table: compiles routes.yaml templates once and matches a request's host and
// normalized path to exactly one route, capturing template parameters.
import type { Protocol, RouteConfig, RunLimits } from '../config/schema.ts';
import { compileHostTemplate, isHostTemplate, matchHostTemplate, type HostTemplate } from './hostTemplate.ts';
import { compileTemplate, matchTemplate, type Template } from './template.ts';

/**
 * Captured values may name a user or a service and end up inside a socket path, so they are held
 * to a narrow alphabet: no `/`, no leading dot (so never `.` or `..`), nothing a shell or path would
 * treat specially.
 */
const PARAM_VALUE = /^[A-Za-z0-9_][A-Za-z0-9._@+-]{0,127}$/;

export interface CompiledRoute {
  config: RouteConfig;
  host: string | undefined;
  /** Set instead of `host` when the route's host captures parameters. */
  hostTemplate?: HostTemplate;
  /** One per path segment: a segment's captures never cross a `/`. */
  matchers: Template[];
  /** The tunnel name template (`tunnel:`) compiled, when the route has one. */
  tunnel: Template | undefined;
  /** The upstream address template, filled per request; the portal also reads captures back from it. */
  upstream: Template;
  /** Higher wins: literal segments count more than captures, deeper more than shallower. */
  specificity: number;
  /** Authorizer run limits: the route's own, else the gateway's. */
  limits: RunLimits;
}

export type TunnelMatch = { ok: true; route: CompiledRoute; params: Record<string, string> } | { ok: false; status: 400 | 404; reason: string };

export type RouteMatch =
  | { ok: true; route: CompiledRoute; params: Record<string, string>; rest: string[] }
  | { ok: false; status: 400 | 404; reason: string };

const compileSegment = (segment: string) => compileTemplate(segment, 'segment');

export function compileRoute(config: RouteConfig, defaults: RunLimits): CompiledRoute {
  const segments = config.path.split('/').filter((s) => s !== '');
  const matchers = segments.map(compileSegment);
  const specificity = matchers.reduce((n, m) => n + (m.pattern === undefined ? 3 : 2), 0) * 2 +
    (config.host && config.host !== '*' ? 1 : 0);
  const host = config.host && config.host !== '*' ? config.host.toLowerCase() : undefined;
  const tunnel = config.tunnel === undefined ? undefined : compileSegment(config.tunnel);
  const upstream = compileTemplate(config.upstream, 'paramValue');
  const limits = { ...defaults, ...config.limits };
  if (host !== undefined && isHostTemplate(host)) return { config, host: undefined, hostTemplate: compileHostTemplate(host), matchers, tunnel, upstream, specificity, limits };
  return { config, host, matchers, tunnel, upstream, specificity, limits };
}

export class RouteTable {
  readonly #routes: CompiledRoute[];
  readonly #byName = new Map<string, CompiledRoute>();
  /** Routes with a tunnel template, most literal first: the first match wins. */
  readonly #inOrder: CompiledRoute[];

  constructor(routes: readonly RouteConfig[], defaultLimits: RunLimits) {
    this.#routes = routes.map((r) => compileRoute(r, defaultLimits)).sort((a, b) => b.specificity - a.specificity);
    for (const r of this.#routes) this.#byName.set(r.config.name, r);
    // The template with the most literal text wins (`{service}.{user}.local` before `{service}.{user}`), then config order.
    const literal = (r: CompiledRoute) => (r.config.tunnel ?? '').replace(/\{[^}]*\}/g, '').length;
    this.#inOrder = this.#routes.filter((r) => r.tunnel).sort((a, b) => literal(b) - literal(a) || routes.indexOf(a.config) - routes.indexOf(b.config));
  }

  /** Every route, most specific first (for the portal's list of what a user can open). */
  list(): readonly CompiledRoute[] {
    return this.#routes;
  }

  /** Tunnel routes are addressed by name (CONNECT target or tunnel endpoint), not by path. */
  byName(name: string): CompiledRoute | undefined {
    return this.#byName.get(name);
  }

  /**
   * The route a tunnel name (CONNECT target, tunnel endpoint name) reaches: a route of that name without
   * a `tunnel:` template, else the most specific route whose template matches, with its captures.
   */
  tunnel(name: string, protocol: Protocol): TunnelMatch {
    const named = this.#byName.get(name);
    if (named && named.tunnel === undefined && named.config.protocols.includes(protocol)) return { ok: true, route: named, params: {} };
    for (const route of this.#inOrder) {
      if (!route.tunnel || !route.config.protocols.includes(protocol)) continue;
      const params = matchTemplate(route.tunnel, name);
      if (!params) continue;
      const bad = badParam(route, params);
      return bad ?? { ok: true, route, params };
    }
    return { ok: false, status: 404, reason: `no ${protocol} route named ${JSON.stringify(name)}` };
  }

  /** Matches an HTTP request. `host` is the Host header; `segments` come from normalizeTarget. */
  match(hostHeader: string | undefined, segments: readonly string[], protocol: Protocol): RouteMatch {
    const host = hostOnly(hostHeader);
    for (const route of this.#routes) {
      if (!route.config.protocols.includes(protocol)) continue;
      if (route.host !== undefined && route.host !== host) continue;
      const hostParams = route.hostTemplate ? matchHostTemplate(route.hostTemplate, host) : {};
      if (hostParams === undefined) continue;
      if (segments.length < route.matchers.length) continue;
      const params: Record<string, string> = { ...hostParams };
      let matched = true;
      for (let i = 0; i < route.matchers.length && matched; i++) {
        const m = route.matchers[i] as Template;
        // Most segments are literal: compared in place, no captures object per request.
        if (m.pattern === undefined) {
          matched = m.text === segments[i];
          continue;
        }
        const found = matchTemplate(m, segments[i] as string);
        if (found === undefined) matched = false;
        else Object.assign(params, found);
      }
      if (!matched) continue;
      const bad = badParam(route, params);
      if (bad) return bad;
      return { ok: true, route, params, rest: segments.slice(route.matchers.length) };
    }
    return { ok: false, status: 404, reason: `no ${protocol} route for host ${JSON.stringify(host ?? '')} and path /${segments.join('/')}` };
  }
}

function badParam(route: CompiledRoute, params: Record<string, string>): { ok: false; status: 400; reason: string } | undefined {
  for (const [name, value] of Object.entries(params)) {
    if (!PARAM_VALUE.test(value)) {
      return { ok: false, status: 400, reason: `route ${route.config.name}: parameter ${name}=${JSON.stringify(value)} has characters outside [A-Za-z0-9._@+-] or starts with a dot` };
    }
  }
  return undefined;
}

/** Host header without port, lowercased; IPv6 literals keep their brackets. */
export function hostOnly(hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}
