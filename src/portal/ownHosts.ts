// The gateway's own host names, the only hosts a sign-in may send a browser to: the portal host, the
// listeners' names, and the hosts of routes that name one (literal or templated).
import type { ListenAddress } from '../config/schema.ts';
import { matchHostTemplate } from '../routing/hostTemplate.ts';
import type { CompiledRoute } from '../routing/routeTable.ts';

/** Listener addresses that bind every interface name no host. */
const UNSPECIFIED = new Set(['0.0.0.0', '[::]', '*']);

/** A host name as the URL parser writes it (lower case, IDN as punycode, IPv6 canonical), or undefined. */
function canonicalHost(host: string): string | undefined {
  try {
    return new URL(`https://${host}`).hostname;
  } catch {
    return undefined;
  }
}

/** The host names of the `tcp:` listeners, without the unspecified addresses. */
export function listenerHostNames(listen: readonly ListenAddress[]): string[] {
  return listen.flatMap((l) => {
    const host = l.tcp?.slice(0, l.tcp.lastIndexOf(':'));
    const name = host === undefined || UNSPECIFIED.has(host) ? undefined : canonicalHost(host);
    return name === undefined || UNSPECIFIED.has(name) ? [] : [name];
  });
}

export interface GatewayHosts {
  portalHost: string | undefined;
  listenerHosts: readonly string[];
  routes: readonly CompiledRoute[];
}

/**
 * Whether `hostname` (as the URL parser wrote it) is one of the gateway's own. A route without `host:`
 * serves every Host header, so matching a route says nothing about whose host it is: only names the
 * configuration states count.
 */
export function isGatewayHost(hostname: string, hosts: GatewayHosts): boolean {
  const host = hostname.toLowerCase();
  if (host === hosts.portalHost?.toLowerCase() || hosts.listenerHosts.includes(host)) return true;
  return hosts.routes.some((r) => r.host === host || (r.hostTemplate !== undefined && matchHostTemplate(r.hostTemplate, host) !== undefined));
}
