// What `gatehouse check` warns about (and `--strict` refuses): a configuration that loads but cannot work
// as written — a policy reading facts nothing states, or facts the route's protocols never carry, and
// upstream sockets in directories that do not exist, templated unix: sockets no socketOwner proves, and
// unixgram: services run by their owner whose answers the private flow sockets would refuse.
import { statSync } from 'node:fs';
import path from 'node:path';
import { gatewayFacts, predicatesIn, tokenFacts, type FactScope, type GatewayPredicate } from '../authz/policy/factVocabulary.ts';
import type { ConfigIssue, KeyPath } from '../config/configError.ts';
import { policyPredicates } from '../config/policyPredicates.ts';
import { reservedPath } from '../routing/reservedPaths.ts';
import { record, routeProtocols, text } from './routeChecks.ts';
import { editDistance } from '../config/schemaIssues.ts';

const known = [...Object.keys(gatewayFacts), ...Object.keys(tokenFacts)];

function lineOf(policy: string, offset: number): number {
  return policy.slice(0, offset).split('\n').length - 1;
}

/** Where the gateway does state `name`, for the warning about a place it does not. */
function whereStated(name: GatewayPredicate): string {
  const fact: { scopes: readonly FactScope[]; publishedUpstream?: true } = gatewayFacts[name];
  if (fact.publishedUpstream) return 'only on routes to published: upstreams';
  if (fact.scopes.length === 1 && fact.scopes[0] === 'publish') return 'only in the publish.policy decision';
  const kinds = fact.scopes.filter((s) => s !== 'publish');
  return `only for ${kinds.join(' and ')} ${kinds.length === 1 && kinds[0] === 'tcp' ? 'tunnels' : 'requests'}`;
}

/** Warnings for one policy, decided in `scopes` (`what` names them in the message). */
export function policyFactWarnings(policy: string, scopes: readonly FactScope[], published: boolean, what: string): { message: string; line: number }[] {
  const stated = new Set<string>(predicatesIn(scopes, published));
  const { defined, used } = policyPredicates(policy);
  const warnings: { message: string; line: number }[] = [];
  const seen = new Set<string>();
  for (const use of used) {
    if (defined.has(use.name) || stated.has(use.name) || use.name in tokenFacts || seen.has(use.name)) continue;
    seen.add(use.name);
    const line = lineOf(policy, use.offset);
    if (use.name in gatewayFacts) {
      warnings.push({ message: `policy reads ${use.name}(…), which the gateway never states ${what}: it states it ${whereStated(use.name as GatewayPredicate)}; rules that need it never match`, line });
    } else if (!use.fromSigner) {
      const close = known.filter((k) => editDistance(use.name, k) <= 2).sort((a, b) => editDistance(use.name, a) - editDistance(use.name, b))[0];
      const hint = close ? ` (did you mean ${close}?)` : ' (the facts are listed under "Facts" in the reference)';
      warnings.push({ message: `policy reads ${use.name}(…), which no request, token or rule of this policy states: rules that need it never match${hint}`, line });
    }
  }
  return warnings;
}

/** The directory a `unix:` upstream's socket must be in: the fixed part before any `{param}`. */
export function socketDirectory(upstream: string, configDir: string): { dir: string; templated: boolean } {
  const socket = upstream.slice('unix:'.length);
  const brace = socket.indexOf('{');
  const fixed = brace === -1 ? socket : socket.slice(0, socket.lastIndexOf('/', brace) + 1);
  return { dir: path.resolve(configDir, brace === -1 ? path.dirname(fixed) : fixed || '.'), templated: brace !== -1 };
}

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

export function configWarnings(data: unknown, configDir: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const root = record(data);
  if (!root) return issues;
  const warn = (at: KeyPath, message: string, lineInValue?: number) => issues.push({ path: at, message, warning: true, ...(lineInValue !== undefined && { lineInValue }) });
  const routes = Array.isArray(root.routes) ? root.routes : [];
  routes.forEach((value, index) => {
    const route = record(value);
    if (!route) return;
    const upstream = text(route.upstream) ?? '';
    const protocols = routeProtocols(route).filter((p): p is FactScope => p === 'http' || p === 'websocket' || p === 'tcp' || p === 'udp');
    const policy = text(route.policy);
    if (policy !== undefined && protocols.length > 0) {
      const what = `on this route (protocols: ${protocols.join(', ')}${upstream.startsWith('published:') ? ', a published: upstream' : ''})`;
      for (const w of policyFactWarnings(policy, protocols, upstream.startsWith('published:'), what)) warn(['routes', index, 'policy'], w.message, w.line);
    }
    const routePath = text(route.path);
    if (routePath !== undefined && reservedPath(routePath.split('{')[0] ?? '') !== undefined) {
      warn(['routes', index, 'path'], 'paths under /.well-known/gatehouse/ belong to the gateway (its pages, tunnel and publish endpoints): no request reaches this route there');
    }
    // A service its owner runs answers as that user: the private flow sockets take only the gateway's user and root.
    if (upstream.startsWith('unixgram:') && route.socketOwner !== undefined && route.unixgramReplies === undefined) {
      warn(['routes', index, 'upstream'], 'a service run by its socketOwner answers as that user, and only the gateway\'s user and root can send to a flow\'s socket: its answers are refused unless the route sets unixgramReplies: any-local-user (which lets every local user reach the flow\'s socket)');
    }
    if (upstream.startsWith('unix:')) {
      const { dir, templated } = socketDirectory(upstream, configDir);
      if (!isDirectory(dir)) warn(['routes', index, 'upstream'], `no directory ${dir}${templated ? ' (the fixed part of the template)' : ''}: the socket cannot be there until it exists; requests would get 502`);
      // Refused for unixgram: (routeChecks.ts); a warning here, since configurations written before this check exist.
      if (templated && route.socketOwner === undefined) warn(['routes', index, 'upstream'], 'a unix: path with a {param} is a user\'s to change: without socketOwner the gateway follows their symlinks to any socket it can connect to; add socketOwner (the parameter naming the user who must own the socket)');
    }
  });
  const publishPolicy = text(record(root.publish)?.policy);
  if (publishPolicy !== undefined) {
    for (const w of policyFactWarnings(publishPolicy, ['publish'], false, 'in the publish.policy decision')) warn(['publish', 'policy'], w.message, w.line);
  }
  return issues;
}
