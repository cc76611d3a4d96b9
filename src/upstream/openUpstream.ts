// Opens a byte stream to a resolved upstream (UNIX socket or TCP) within a deadline, for tunnels and
// WebSocket proxying: the socket is half-open capable, so either direction can finish on its own.
import { connect, type Socket } from 'node:net';
import type { UpstreamTarget } from './upstreamTarget.ts';

export type UpstreamConnection = { ok: true; socket: Socket } | { ok: false; reason: string };

export function openUpstream(target: UpstreamTarget, timeoutMs: number): Promise<UpstreamConnection> {
  return new Promise((resolve) => {
    const socket =
      target.kind === 'unix'
        ? connect({ path: target.path, allowHalfOpen: true })
        : connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    const fail = (reason: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: false, reason });
    };
    const timer = setTimeout(() => fail(`connect timed out after ${timeoutMs} ms`), timeoutMs);
    const onError = (err: NodeJS.ErrnoException) => fail(err.code ?? err.message);
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      // Whoever takes the socket adds its own listener; until then an error must not crash the process.
      socket.on('error', () => {});
      resolve({ ok: true, socket });
    });
  });
}
