// Checks across keys that the schema cannot express: route templates, upstreams, socket owners,
// policies, duplicate routes and listeners. Works on the raw document so it runs even when the schema fails.
import path from 'node:path';
import type { ConfigIssue } from '../config/configError.ts';
import { checkPathTemplate, checkTunnelTemplate, templateParams } from '../config/pathTemplate.ts';
import { hostTemplateExample, hostTemplateParams } from '../routing/hostTemplate.ts';
import { checkPolicy } from './policyCheck.ts';
import { authzChecks, externalKeyNames } from './authzChecks.ts';
import { MAX_SOCKET_PATH_BYTES, unixDatagramModule } from '../upstream/unixgramModule.ts';

type Raw = Record<string, unknown>;

export function record(value: unknown): Raw | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Raw) : undefined;
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

export function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/**
 * A route's protocols as written: the list, or a single name written without brackets (`protocols: tcp`,
 * which the schema reports) taken as that one, so no check adds a follow-on error about an empty list.
 */
export function routeProtocols(route: Raw): unknown[] {
  const value = route.protocols ?? ['http'];
  return Array.isArray(value) ? value : typeof value === 'string' ? [value] : [];
}

function validPort(port: string): boolean {
  const n = Number(port);
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** What each way in captures: the path (http, websocket) and the tunnel name (tcp); undefined when broken. */
interface Captures {
  path: string[] | undefined;
  tunnel: string[] | undefined;
  protocols: unknown[];
}

/** Parameters that every way into the route captures (those the upstream and socketOwner may use). */
function missingFrom(captures: Captures, name: string): string | undefined {
  const viaPath = captures.protocols.includes('http') || captures.protocols.includes('websocket');
  if (viaPath && captures.path && !captures.path.includes(name)) return 'the path does not capture it';
  const byName = captures.protocols.find((p) => p === 'tcp' || p === 'udp');
  if (byName && captures.tunnel && !captures.tunnel.includes(name)) {
    return captures.tunnel.length === 0 ? `${byName} ${byName === 'tcp' ? 'tunnels' : 'flows'} name the route itself: give the route a tunnel: template that captures it, e.g. tunnel: "{service}.{user}"` : 'the tunnel template does not capture it';
  }
  return undefined;
}

const UPSTREAM = /^(unix:.+|unixgram:.+|tcp:.+:\d{1,5}|udp:.+:\d{1,5}|published:[^/]+\/[^/]+)$/;

/**
 * UDP routes carry datagrams only: `protocols: [udp]` alone, and a fixed `udp:host:port` upstream (the route's
 * name is the flow's target, and the RFC 9298 template names that address) or a `unixgram:/path` (which, like
 * `unix:`, may use what a `tunnel:` template captures). The datagram socket module must load here.
 */
function checkUdpRoute(route: Raw, at: (string | number)[], issues: ConfigIssue[]): void {
  const upstream = text(route.upstream) ?? '';
  const protocols = routeProtocols(route);
  const udp = protocols.includes('udp');
  const udpUpstream = upstream.startsWith('udp:');
  const unixgram = upstream.startsWith('unixgram:');
  if (udp && protocols.length > 1) issues.push({ path: [...at, 'protocols'], message: 'udp routes carry datagrams only: protocols: [udp] alone' });
  // A published UDP service (`gatehouse publish NAME=udp:PORT`) is reached through its publisher.
  if (udp && !udpUpstream && !unixgram && !upstream.startsWith('published:') && upstream !== '') issues.push({ path: [...at, 'upstream'], message: 'a udp route needs a udp:host:port, unixgram:/path or published:USER/SERVICE upstream' });
  if ((udpUpstream || unixgram) && !udp) issues.push({ path: [...at, 'upstream'], message: `a ${unixgram ? 'unixgram' : 'udp'}: upstream needs protocols: [udp]` });
  if (unixgram) checkUnixgramUpstream(upstream.slice('unixgram:'.length), [...at, 'upstream'], issues);
  // A user's path without socketOwner would be followed wherever the user points it (a symlink to /dev/log).
  if (unixgram && upstream.includes('{') && route.socketOwner === undefined) {
    issues.push({ path: [...at, 'upstream'], message: 'a unixgram: path with a {param} is a user\'s to change: add socketOwner (the parameter naming the user who must own the socket), or the gateway follows their symlinks to any socket it can send to' });
  }
  if (udpUpstream && upstream.includes('{')) issues.push({ path: [...at, 'upstream'], message: 'udp: upstreams are fixed addresses (no {param})' });
  if (!udp) return;
  for (const key of ['host', 'path', 'stripPrefix', 'forwardToken', 'connectTimeoutSeconds']) {
    if (route[key] !== undefined) issues.push({ path: [...at, key], message: `${key} has no effect on a udp route: flows name the route itself and carry datagrams` });
  }
}

/**
 * A unixgram: path: absolute (the flow takes only datagrams whose sender is this exact path, and a service
 * bound by another spelling of it would be taken for a stranger), short enough for a socket address.
 */
function checkUnixgramUpstream(socket: string, where: (string | number)[], issues: ConfigIssue[]): void {
  if (!socket.startsWith('/')) issues.push({ path: where, message: 'unixgram: paths are absolute (/run/service/dgram.sock)' });
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) issues.push({ path: where, message: `socket path is longer than the ${MAX_SOCKET_PATH_BYTES} bytes a UNIX socket address holds` });
  const addon = unixDatagramModule();
  if (!addon.ok) issues.push({ path: where, message: addon.reason });
}

/** Upstream checks: its template uses only what every way in captures. */
function checkUpstream(route: Raw, at: (string | number)[], captures: Captures, issues: ConfigIssue[]): void {
  const upstream = text(route.upstream);
  if (upstream === undefined || !UPSTREAM.test(upstream)) return; // the schema reports it
  const where = [...at, 'upstream'];
  const used = templateParams(upstream);
  if (!used.ok) {
    issues.push({ path: where, message: used.message });
    return;
  }
  for (const name of used.params) {
    const why = missingFrom(captures, name);
    if (why) issues.push({ path: where, message: `upstream uses {${name}}, but ${why}` });
  }
  if (upstream.startsWith('unix:') || upstream.startsWith('unixgram:')) {
    const socket = upstream.slice(upstream.indexOf(':') + 1);
    if (socket.split('/').includes('..')) issues.push({ path: where, message: 'socket paths must not contain ".." segments' });
  } else if (upstream.startsWith('published:')) {
    for (const part of upstream.slice('published:'.length).split('/')) {
      if (!/^(\{[a-z][a-z0-9_]*\}|[A-Za-z0-9][A-Za-z0-9._@+-]*)$/.test(part)) issues.push({ path: where, message: `published:USER/SERVICE: ${JSON.stringify(part)} is neither a name nor one {param}` });
    }
  } else {
    const port = upstream.slice(upstream.lastIndexOf(':') + 1);
    if (!validPort(port)) issues.push({ path: where, message: `port ${port} is out of range 1..65535` });
  }
}

function checkSocketOwner(route: Raw, at: (string | number)[], captures: Captures, issues: ConfigIssue[]): void {
  const owner = text(route.socketOwner);
  if (owner === undefined) return;
  const where = [...at, 'socketOwner'];
  const upstream = text(route.upstream);
  if (upstream !== undefined && !upstream.startsWith('unix:') && !upstream.startsWith('unixgram:')) {
    issues.push({ path: where, message: 'socketOwner needs a unix: or unixgram: upstream' });
  }
  const why = missingFrom(captures, owner);
  if (why) issues.push({ path: where, message: `socketOwner "${owner}" must be a captured parameter, but ${why}` });
}

function checkTunnelTemplateKey(route: Raw, at: (string | number)[], issues: ConfigIssue[]): string[] | undefined {
  const template = text(route.tunnel);
  if (template === undefined) return [];
  // udp flows name their route as tunnels do (`tunnel -L udp:PORT:dns.alice`).
  if (!routeProtocols(route).includes('tcp') && !routeProtocols(route).includes('udp')) {
    issues.push({ path: [...at, 'tunnel'], message: 'tunnel names tcp tunnels and udp flows; this route allows neither' });
  }
  const parsed = checkTunnelTemplate(template);
  if (!parsed.ok) {
    issues.push({ path: [...at, 'tunnel'], message: parsed.message });
    return undefined;
  }
  return parsed.params;
}

/** Tunnel settings only mean something where there are tunnels; tcp-only routes are chosen by name. */
function checkTunnelKeys(route: Raw, at: (string | number)[], issues: ConfigIssue[]): void {
  const protocols = routeProtocols(route);
  if (!protocols.includes('websocket') && !protocols.includes('tcp')) {
    for (const key of ['idleTimeoutSeconds', 'connectTimeoutSeconds']) {
      if (route[key] !== undefined) issues.push({ path: [...at, key], message: `${key} applies to websocket and tcp routes; this route has protocols ${JSON.stringify(protocols)}` });
    }
  }
  if (protocols.length > 0 && protocols.every((p) => p === 'tcp')) {
    for (const key of ['host', 'path', 'stripPrefix', 'forwardToken']) {
      if (route[key] !== undefined) issues.push({ path: [...at, key], message: `${key} has no effect on a tcp-only route: tunnels name the route itself and carry raw bytes` });
    }
  }
}

function checkRoute(route: Raw, index: number, issues: ConfigIssue[], externalKeys: readonly string[]): void {
  const at = ['routes', index];
  const routePath = text(route.path ?? '/');
  let captured: string[] | undefined;
  if (routePath !== undefined && routePath.startsWith('/')) {
    const parsed = checkPathTemplate(routePath);
    if (parsed.ok) captured = parsed.params;
    else issues.push({ path: [...at, 'path'], message: parsed.message });
  }
  const host = text(route.host);
  // A host template's captures are parameters like the path's (`{service}--{user}.apps.example.org`).
  if (host !== undefined && captured) captured = [...captured, ...hostTemplateParams(host)];
  if (host !== undefined && host !== '*' && !/^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.?)+$|^\[[0-9a-fA-F:.]+\]$/.test(hostTemplateExample(host))) {
    issues.push({ path: [...at, 'host'], message: `"${host}" is not a host name (no port, no scheme, no path)` });
  }
  const captures: Captures = { path: captured, tunnel: checkTunnelTemplateKey(route, at, issues), protocols: routeProtocols(route) };
  checkUpstream(route, at, captures, issues);
  checkSocketOwner(route, at, captures, issues);
  if (route.unixgramReplies !== undefined && !text(route.upstream)?.startsWith('unixgram:')) issues.push({ path: [...at, 'unixgramReplies'], message: 'unixgramReplies needs a unixgram: upstream' });
  if (routeProtocols(route).includes('udp') || text(route.upstream)?.match(/^(udp|unixgram):/)) checkUdpRoute(route, at, issues);
  else checkTunnelKeys(route, at, issues);
  const policy = text(route.policy);
  if (policy !== undefined && policy.trim() !== '') {
    const params = [...new Set([...(captured ?? []), ...(captures.tunnel ?? [])])];
    for (const problem of checkPolicy(policy, params, externalKeys)) {
      issues.push({ path: [...at, 'policy'], message: problem.message, lineInValue: problem.line });
    }
  }
}

function checkDuplicateRoutes(routes: unknown[], issues: ConfigIssue[]): void {
  const names = new Map<string, number>();
  const places = new Map<string, number>();
  routes.forEach((value, index) => {
    const route = record(value);
    if (!route) return;
    const name = text(route.name);
    if (name !== undefined) {
      const first = names.get(name);
      if (first === undefined) names.set(name, index);
      else issues.push({ path: ['routes', index, 'name'], message: `duplicate route name "${name}" (also routes[${first}])` });
    }
    // Tunnel-only routes are chosen by name, not by host and path.
    const protocols = routeProtocols(route);
    const routePath = text(route.path ?? '/');
    const host = text(route.host ?? '*');
    if (routePath === undefined || host === undefined || !protocols.some((p) => p === 'http' || p === 'websocket')) return;
    const place = `${host.toLowerCase()} ${routePath.replace(/\{[^{}]*\}/g, '{}')}`;
    const first = places.get(place);
    if (first === undefined) places.set(place, index);
    else {
      const where = route.path === undefined ? ['routes', index] : ['routes', index, 'path'];
      issues.push({ path: where, message: `same host and path as routes[${first}]: requests could reach only one of them` });
    }
  });
}

function checkListeners(listen: unknown[], configDir: string, issues: ConfigIssue[]): void {
  const seen = new Map<string, number>();
  listen.forEach((value, index) => {
    const entry = record(value);
    if (!entry) return;
    let identity: string | undefined;
    const tcp = text(entry.tcp);
    const unix = text(entry.unix);
    if (tcp !== undefined && /:\d{1,5}$/.test(tcp)) {
      const port = tcp.slice(tcp.lastIndexOf(':') + 1);
      // Port 0 asks the system for a free port (the gateway prints the one it got): tests use it.
      if (!validPort(port) && Number(port) !== 0) issues.push({ path: ['listen', index, 'tcp'], message: `port ${port} is out of range 0..65535` });
      identity = `tcp ${tcp.toLowerCase()}`;
      if (entry.mode !== undefined) issues.push({ path: ['listen', index, 'mode'], message: 'mode applies only to unix listeners' });
    } else if (unix !== undefined && unix !== '') {
      const socket = path.resolve(configDir, unix);
      // sun_path holds 108 bytes including the terminating NUL.
      if (Buffer.byteLength(socket) > 107) {
        issues.push({ path: ['listen', index, 'unix'], message: `socket path ${socket} is longer than the 107 bytes a UNIX socket address holds` });
      }
      identity = `unix ${socket}`;
    }
    if (identity === undefined) return;
    const first = seen.get(identity);
    if (first === undefined) seen.set(identity, index);
    else issues.push({ path: ['listen', index], message: `duplicate listener (same as listen[${first}])` });
  });
}

/** Every cross-key problem in the raw document. */
export function routeChecks(data: unknown, configDir: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const root = record(data);
  if (!root) return issues;
  const routes = list(root.routes);
  const externalKeys = externalKeyNames(root);
  routes.forEach((value, index) => {
    const route = record(value);
    if (route) checkRoute(route, index, issues, externalKeys);
  });
  issues.push(...authzChecks(root));
  const publishPolicy = text(record(root.publish)?.policy);
  if (publishPolicy !== undefined && publishPolicy.trim() !== '') {
    for (const problem of checkPolicy(publishPolicy, [], externalKeys)) issues.push({ path: ['publish', 'policy'], message: problem.message, lineInValue: problem.line });
  }
  checkDuplicateRoutes(routes, issues);
  checkListeners(list(root.listen), configDir, issues);
  return issues;
}
