// Parses `-L` forward specifications: `[addr:]port:ROUTE` (a local TCP port), `unix:PATH:ROUTE` (a local
// UNIX socket), `udp:[addr:]port:ROUTE` (a local UDP port) and `unixgram:PATH:ROUTE` (a local datagram UNIX
// socket). Pure: binding happens in the listener modules.
import { BlockList, isIP } from 'node:net';
import { validRoute } from '../token/names.ts';

export type ForwardSpec =
  | { kind: 'tcp'; host: string; port: number; route: string }
  | { kind: 'unix'; path: string; route: string }
  | { kind: 'udp'; host: string; port: number; route: string }
  | { kind: 'unixgram'; path: string; route: string };

export type SpecResult = { ok: true; spec: ForwardSpec } | { ok: false; error: string };

const usage = 'expected [ADDR:]PORT:ROUTE, unix:PATH:ROUTE, udp:[ADDR:]PORT:ROUTE or unixgram:PATH:ROUTE';

function invalid(text: string, why: string): SpecResult {
  return { ok: false, error: `-L ${JSON.stringify(text)}: ${why}` };
}

/** `-L` text -> what to bind and which route it leads to. Ports may be 0 (the system picks one). */
export function parseForwardSpec(text: string): SpecResult {
  const cut = text.lastIndexOf(':');
  if (cut <= 0) return invalid(text, usage);
  const local = text.slice(0, cut);
  const route = text.slice(cut + 1);
  const routeCheck = validRoute(route);
  if (!routeCheck.ok) return invalid(text, routeCheck.error.message);

  const socket = /^(unix|unixgram):(.*)$/s.exec(local);
  if (socket) {
    const [, kind, path] = socket as unknown as [string, 'unix' | 'unixgram', string];
    if (path.length === 0) return invalid(text, `empty socket path; ${usage}`);
    if (path.includes('\0')) return invalid(text, 'socket path contains a NUL byte');
    // Linux sun_path holds 107 bytes plus the terminator.
    if (Buffer.byteLength(path) > 107) return invalid(text, `socket path is ${Buffer.byteLength(path)} bytes; UNIX socket paths are limited to 107`);
    return { ok: true, spec: { kind, path, route } };
  }

  const udp = local.startsWith('udp:');
  // `port`, `addr:port` or `[v6]:port`.
  const m = /^(?:(\[[^\]]*\]|[^:[\]]+):)?(\d{1,5})$/.exec(udp ? local.slice('udp:'.length) : local);
  if (!m) return invalid(text, usage);
  const port = Number(m[2]);
  if (port > 65535) return invalid(text, `port ${port} is out of range (0-65535)`);
  const host = (m[1] ?? '127.0.0.1').replace(/^\[|\]$/g, '');
  if (host.length === 0) return invalid(text, 'empty address');
  if (m[1]?.startsWith('[') && isIP(host) !== 6) return invalid(text, `${m[1]} is not an IPv6 address`);
  return { ok: true, spec: { kind: udp ? 'udp' : 'tcp', host, port, route } };
}

/** How a listener is named in messages: `127.0.0.1:8888`, `[::1]:8888`, `unix:/path`, `udp:127.0.0.1:5353`, `unixgram:/path`. */
export function listenerLabel(spec: ForwardSpec, boundPort?: number): string {
  if (spec.kind === 'unix' || spec.kind === 'unixgram') return `${spec.kind}:${spec.path}`;
  const host = spec.host.includes(':') ? `[${spec.host}]` : spec.host;
  return `${spec.kind === 'udp' ? 'udp:' : ''}${host}:${boundPort ?? spec.port}`;
}

/** 127.0.0.0/8 and ::1 (an IPv4-mapped ::ffff:127.x.y.z is matched as its IPv4 address). */
const loopbackAddresses = new BlockList();
loopbackAddresses.addSubnet('127.0.0.0', 8, 'ipv4');
loopbackAddresses.addAddress('::1', 'ipv6');

/**
 * True for addresses only this machine can reach: an IP literal in 127.0.0.0/8 or ::1, or `localhost`. A name
 * that merely looks like one (`127.evil.example`) is a DNS name that can resolve anywhere, so it is not.
 */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && loopbackAddresses.check(host, family === 6 ? 'ipv6' : 'ipv4');
}
