// `-L` listeners: a local TCP port or private UNIX socket; every accepted connection gets its own
// tunnel through the gateway, spliced with half-close and backpressure. A failing tunnel stays local.
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { carryBytes } from '../tunnel/carryBytes.ts';
import { isLoopback, listenerLabel, type ForwardSpec } from './forwardSpec.ts';
import { preparePrivateSocketPath, removeOwnSocket, restrictSocket } from './privateSocket.ts';
import { describeFailure, type OpenResult } from './tunnelFailure.ts';
import type { TunnelReads } from './tunnelReads.ts';

export interface ForwardDeps {
  /** Opens a tunnel for this listener's relay (CONNECT: read into reused memory, see TunnelReads). */
  open(route: string): Promise<OpenResult>;
  /** `https://host:port`, for messages. */
  gateway: string;
  transport: string;
  /** One line to the user (stderr). */
  say(line: string): void;
  verbose: boolean;
}

export interface LocalForward {
  label: string;
  /** The bound TCP port (useful with port 0). */
  port?: number;
  /** Stops accepting and removes the UNIX socket; open tunnels go on. */
  stopListening(): Promise<void>;
  /** Waits up to `graceMs` for open tunnels to finish, then cuts the rest. */
  drain(graceMs: number): Promise<void>;
}

export type ForwardResult = { ok: true; forward: LocalForward } | { ok: false; error: string };

let connectionCounter = 0;

export function formatBytes(n: number): string {
  if (n < 10_000) return `${n} B`;
  if (n < 10_000_000) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** Read buffering of each accepted connection, and how much may wait to be written to it. */
const LOCAL_HIGH_WATER_MARK = 256 * 1024;

/**
 * Joins a local connection and a tunnel with the byte carrier: half-close each way, backpressure, and a
 * side cut short is reset. The client's choices: an error on one side closes the other as its close
 * would (flushed if that side had finished sending), and a local reader is waited for however slow it is.
 * A tunnel opened with `reads` (see TunnelReads) is relayed from its reused memory, corked per turn.
 */
export function spliceStreams(local: Socket, tunnel: Duplex, onDone: (failure: { side: 'local' | 'tunnel'; error: Error } | undefined) => void, reads?: { from: TunnelReads; early: Buffer }): void {
  const carried = carryBytes({
    client: local,
    upstream: tunnel,
    onError: 'as-close',
    lingerMs: 0,
    ...(reads && { upstreamReads: reads.from, upstreamHead: reads.early, corkReads: true }),
  });
  void carried.done.then(({ error }) => onDone(error && { side: error.side === 'client' ? 'local' : 'tunnel', error: error.error }));
}

/** The line scripts wait for, after a warning when others on this machine (or beyond) can use the port. */
export function announceReady(spec: ForwardSpec, label: string, deps: Pick<ForwardDeps, 'say' | 'gateway' | 'transport'>): void {
  if (spec.kind === 'tcp' || spec.kind === 'udp') {
    const who = isLoopback(spec.host) ? 'every local user on this machine' : 'anyone who can reach this address';
    const instead = spec.kind === 'tcp' ? `; on a shared machine use -L unix:PATH:${spec.route} instead` : '';
    deps.say(`warning: ${label} is a ${spec.kind.toUpperCase()} port: ${who} can ${spec.kind === 'tcp' ? 'connect to it' : 'send to it'} and use the ${spec.kind === 'tcp' ? 'tunnel' : 'flow'} with your credentials${instead}`);
  }
  deps.say(`ready: ${label} -> ${spec.route} via ${deps.gateway} (${deps.transport})`);
}

/** Why a local listener (TCP, UNIX or UDP) could not be bound, in the user's words. */
export function bindFailure(spec: ForwardSpec, err: unknown): { ok: false; error: string } {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EACCES' ? 'permission denied' : code === 'EADDRNOTAVAIL' ? 'no such local address' : (err as Error).message;
  return { ok: false, error: `cannot listen on ${listenerLabel(spec)}: ${why}` };
}

async function bind(server: Server, spec: ForwardSpec): Promise<{ ok: true; port?: number; path?: string; ino?: number } | { ok: false; error: string }> {
  let path: string | undefined;
  if (spec.kind === 'unix') {
    const prepared = await preparePrivateSocketPath(spec.path);
    if (!prepared.ok) return prepared;
    path = prepared.path;
  }
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const listening = () => {
        server.off('error', reject);
        resolve();
      };
      if (path !== undefined) server.listen(path, listening);
      else if (spec.kind === 'tcp') server.listen(spec.port, spec.host, listening);
    });
  } catch (err) {
    return bindFailure(spec, err);
  }
  if (path !== undefined) return { ok: true, path, ino: await restrictSocket(path) };
  const address = server.address();
  return { ok: true, ...(typeof address === 'object' && address && { port: address.port }) };
}

export async function startForward(spec: ForwardSpec, deps: ForwardDeps): Promise<ForwardResult> {
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, highWaterMark: LOCAL_HIGH_WATER_MARK }, (local) => {
    open.add(local);
    local.once('close', () => open.delete(local));
    void handle(local);
  });
  const bound = await bind(server, spec);
  if (!bound.ok) return bound;
  const label = spec.kind === 'unix' ? `unix:${bound.path}` : listenerLabel(spec, bound.port);
  server.on('error', (err) => deps.say(`error: listener ${label}: ${err.message}`));

  async function handle(local: Socket): Promise<void> {
    const id = ++connectionCounter;
    const started = performance.now();
    const peer = local.remoteAddress ? `${local.remoteAddress}:${local.remotePort}` : 'local socket';
    local.on('error', () => {}); // Until spliced, a reset only means the client gave up.
    if (deps.verbose) deps.say(`[${id}] ${peer} -> ${spec.route}: opening`);
    const result = await deps.open(spec.route);
    if (!result.ok) {
      deps.say(`error: [${id}] ${describeFailure(result.failure, deps.gateway, spec.route)}`);
      local.destroy();
      return;
    }
    if (local.destroyed) {
      result.stream.destroy();
      return;
    }
    if (deps.verbose) deps.say(`[${id}] ${peer} -> ${spec.route}: open`);
    spliceStreams(
      local,
      result.stream,
      (failure) => {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const outcome = failure ? `${failure.side === 'tunnel' ? 'tunnel' : 'local connection'} failed: ${failure.error.message}` : 'closed';
      const line = `[${id}] ${peer} -> ${spec.route}: ${outcome}; ${formatBytes(local.bytesRead)} sent, ${formatBytes(local.bytesWritten)} received, ${seconds} s`;
      if (deps.verbose) deps.say(line);
      else if (failure?.side === 'tunnel') deps.say(`error: ${line}`);
      },
      result.reads,
    );
  }

  announceReady(spec, label, deps);

  let stopped: Promise<void> | undefined;
  return {
    ok: true,
    forward: {
      label,
      ...(bound.port !== undefined && { port: bound.port }),
      stopListening() {
        stopped ??= (async () => {
          server.close();
          if (bound.path !== undefined && bound.ino !== undefined) await removeOwnSocket(bound.path, bound.ino);
        })();
        return stopped;
      },
      async drain(graceMs) {
        const until = Date.now() + graceMs;
        while (open.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
        for (const socket of open) socket.destroy();
      },
    },
  };
}
