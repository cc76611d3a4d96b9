// The gateway's reserved paths under /.well-known/gatehouse/ (tunnel, UDP and publish endpoints, its own pages)
// and RFC 9298's /.well-known/masque/udp/, decided once on the normalized path, so every spelling and way in agree.
import { normalizeTarget } from './normalizePath.ts';

/** The route name a publisher's registration is decided as (`route("publish")` in the publish policy). */
export const PUBLISH_ROUTE = 'publish';

/** Where `gatehouse publish` registers (the publish protocol, upstream/publishProtocol.ts, upgrades it). */
export const PUBLISH_PATH = '/.well-known/gatehouse/publish';

/** The issuer's endpoints (device and code flows, refresh, logout): gateway pages under this prefix. */
export const LOGIN_PATH = '/.well-known/gatehouse/login';

/**
 * What a connection without a client certificate may reach when the issuer makes certificates
 * (issuer.certificates): starting a device login with a CSR and polling it. Nothing else.
 */
export const CERTIFICATE_LOGIN_PATHS: readonly string[] = [`${LOGIN_PATH}/device`, `${LOGIN_PATH}/device/token`];

const RESERVED = ['.well-known', 'gatehouse'];
const TUNNEL = [...RESERVED, 'tunnel'];
const UDP = [...RESERVED, 'udp'];
/** RFC 9298's default URI template, `/.well-known/masque/udp/{target_host}/{target_port}/`. */
const MASQUE_UDP = ['.well-known', 'masque', 'udp'];

/** The path of a UDP flow to `route` (CONNECT-UDP or the WebSocket transport). */
export function udpEndpointPath(route: string): string {
  return `/${UDP.join('/')}/${encodeURIComponent(route)}`;
}

export type ReservedPath =
  /** `/.well-known/gatehouse/tunnel/<route>`: the route it names ('' when it names none). */
  | { kind: 'tunnel'; routeName: string }
  | { kind: 'publish' }
  /**
   * A UDP flow (RFC 9298): `/.well-known/gatehouse/udp/<route>` names the route, the RFC's template
   * `/.well-known/masque/udp/<host>/<port>/` names the target address instead ('' when malformed).
   */
  | { kind: 'udp'; routeName: string }
  | { kind: 'udp'; target: { host: string; port: string } }
  /** Any other path under the prefix (the prefix itself included): the gateway's pages. */
  | { kind: 'portal'; path: string; query: string };

/**
 * Which reserved path `url` names, or undefined when it names none. A target that does not normalize is
 * none: the routing stage, which normalizes the same way, refuses it (400), so it reaches no route either.
 */
export function reservedPath(url: string | undefined): ReservedPath | undefined {
  // Hot path: a target that neither spells the prefix nor escapes anything cannot normalize onto it.
  if (url === undefined || (!url.includes('well-known') && !url.includes('%'))) return undefined;
  const target = normalizeTarget(url);
  if (target.ok && MASQUE_UDP.every((segment, i) => target.segments[i] === segment)) {
    const [host = '', port = ''] = target.segments.length === MASQUE_UDP.length + 2 ? target.segments.slice(-2) : [];
    return { kind: 'udp', target: { host, port } };
  }
  if (!target.ok || !RESERVED.every((segment, i) => target.segments[i] === segment)) return undefined;
  if (TUNNEL.every((segment, i) => target.segments[i] === segment)) {
    return { kind: 'tunnel', routeName: target.segments.length === TUNNEL.length + 1 ? (target.segments.at(-1) as string) : '' };
  }
  if (UDP.every((segment, i) => target.segments[i] === segment)) {
    return { kind: 'udp', routeName: target.segments.length === UDP.length + 1 ? (target.segments.at(-1) as string) : '' };
  }
  if (target.path === PUBLISH_PATH) return { kind: 'publish' };
  return { kind: 'portal', path: target.path, query: target.query };
}
