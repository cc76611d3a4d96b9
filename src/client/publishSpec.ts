// Parses `gatehouse publish` arguments, NAME=TARGET: the service name and what the publisher may connect
// to for it (a UNIX socket path, a loopback port, or a loopback UDP port). Nothing else can ever be a target.
import { isIP } from 'node:net';
import { expandPath } from './clientConfigFile.ts';
import { isLoopback } from './forwardSpec.ts';
import { serviceNameProblem } from '../upstream/publishProtocol.ts';
import { DEFAULT_MAX_STREAM_WINDOW, MAX_STREAM_WINDOW, MIN_STREAM_WINDOW } from '../config/publishWindowBounds.ts';

/** `udp`: a UDP service (`NAME=udp:PORT`), reached by datagrams only, from udp routes. */
export type PublishTarget = { kind: 'unix'; path: string } | { kind: 'tcp' | 'udp'; host: string; port: number };
export interface PublishSpec {
  service: string;
  target: PublishTarget;
  /** `NAME/tcp=TARGET`: the service speaks raw TCP, not HTTP (the portal shows `tunnel -L` for it, not a link). */
  rawTcp?: true;
}

export type PublishSpecResult = { ok: true; spec: PublishSpec } | { ok: false; error: string };

const usage = 'expected NAME=unix:PATH, NAME=PORT or NAME=127.0.0.1:PORT (NAME/tcp=… for a raw TCP service, NAME=udp:[HOST:]PORT for a UDP one)';

/** `jupyter=unix:~/.gatehouse/jupyter.sock`, `api=127.0.0.1:8000`, `api=8000`, `api=[::1]:8000`, `redis/tcp=6379`, `stream=udp:127.0.0.1:9000`. */
export function parsePublishSpec(text: string, home?: string): PublishSpecResult {
  const bad = (why: string): PublishSpecResult => ({ ok: false, error: `${JSON.stringify(text)}: ${why}` });
  const eq = text.indexOf('=');
  if (eq <= 0) return bad(usage);
  // What the service speaks, as in `6379/tcp`: HTTP unless it says tcp.
  const [, service = '', speaks] = /^(.*?)(?:\/(tcp|http))?$/.exec(text.slice(0, eq)) ?? [];
  const problem = serviceNameProblem(service);
  if (problem) return bad(problem);
  const kind = speaks === 'tcp' ? { rawTcp: true as const } : {};
  const target = text.slice(eq + 1);
  if (target.startsWith('unix:')) {
    const path = expandPath(target.slice('unix:'.length), home);
    if (path.length === 0) return bad(`empty socket path; ${usage}`);
    if (path.includes('\0')) return bad('socket path contains a NUL byte');
    if (Buffer.byteLength(path) > 107) return bad(`socket path is ${Buffer.byteLength(path)} bytes; UNIX socket paths are limited to 107`);
    return { ok: true, spec: { service, target: { kind: 'unix', path }, ...kind } };
  }
  const m = /^(tcp:|udp:)?(?:(\[[^\]]*\]|[^:[\]]+):)?(\d{1,5})$/.exec(target);
  if (!m) return bad(usage);
  const [, scheme, hostPart, portText] = m;
  const udp = scheme === 'udp:';
  // A UDP service speaks datagrams: `/tcp` or `/http` (a byte stream) cannot describe it.
  if (udp && speaks !== undefined) return bad(`a udp: target is a UDP service; drop the /${speaks}`);
  const port = Number(portText);
  if (port < 1 || port > 65535) return bad(`port ${port} is out of range (1-65535)`);
  const host = (hostPart ?? '127.0.0.1').replace(/^\[|\]$/g, '');
  if (hostPart?.startsWith('[') && isIP(host) !== 6) return bad(`${hostPart} is not an IPv6 address`);
  // Only this machine: a publisher must not become a way into the network it runs in.
  if (!isLoopback(host)) return bad(`${host} is not a loopback address; a publisher reaches only this machine (127.0.0.0/8, ::1, localhost) or a UNIX socket`);
  return { ok: true, spec: { service, target: { kind: udp ? 'udp' : 'tcp', host, port }, ...kind } };
}

export function targetLabel(target: PublishTarget): string {
  if (target.kind === 'unix') return `unix:${target.path}`;
  return `${target.kind === 'udp' ? 'udp:' : ''}${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
}

/** `--window`: bytes, or a number with K/M/G (KiB, MiB, GiB), within the protocol's bounds. */
export function parseWindowSize(text: string | undefined): { ok: true; bytes: number } | { ok: false; error: string } {
  if (text === undefined) return { ok: true, bytes: DEFAULT_MAX_STREAM_WINDOW };
  const m = /^(\d+)\s*([KMG])?(?:i?B)?$/i.exec(text.trim());
  const bytes = m ? Number(m[1]) * 1024 ** ' KMG'.indexOf((m[2] ?? ' ').toUpperCase()) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < MIN_STREAM_WINDOW || bytes > MAX_STREAM_WINDOW) {
    return { ok: false, error: `--window ${JSON.stringify(text.slice(0, 40))}: give a size from 256K to 1G (e.g. 16M)` };
  }
  return { ok: true, bytes };
}

/** In a cluster, connections to distinct instances a publisher keeps (k of N): one may die and the service is still carried. */
export const DEFAULT_CONNECTIONS = 2;
