// Opens a connected UDP socket to a `udp:host:port` upstream within a deadline: the upstream side of one
// UDP flow. Connected, so the kernel passes up only the upstream's own datagrams (no other sender's).
import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { refuse } from '../errors/refusal.ts';
import { upstreamRefusal, type UpstreamRefusal } from './openUpstream.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';

export type DatagramUpstream = { ok: true; socket: Socket } | UpstreamRefusal;

/** Kernel buffers of a flow's upstream socket: room for a burst of full-size datagrams each way. */
const SOCKET_BUFFER_BYTES = 1 << 20;

/** A socket of the target's family, connected to it (a name is resolved by the kernel's resolver, first address). */
export function openDatagramUpstream(target: Extract<UpstreamTarget, { kind: 'udp' }>, timeoutMs: number): Promise<DatagramUpstream> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: isIP(target.host) === 6 ? 'udp6' : 'udp4', recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
    let settled = false;
    const fail = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.close();
      resolve(upstreamRefusal(refuse('GH_UPSTREAM_UNAVAILABLE', reason)));
    };
    const timer = setTimeout(() => fail(`connect timed out after ${timeoutMs} ms`), timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    socket.connect(target.port, target.host, () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // Whoever carries the flow adds its own listener; until then an error (an ICMP unreachable) must not crash the process.
      socket.on('error', () => {});
      resolve({ ok: true, socket });
    });
  });
}
