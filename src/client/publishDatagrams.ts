// The publisher's side of a stream to a UDP service: one connected UDP socket to the service per stream (one
// flow, so replies come back on the flow that asked), DATAGRAM capsules on the stream, bounded queues both ways.
import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import type { ServerHttp2Stream } from 'node:http2';
import { CapsuleChannel } from '../tunnel/udpChannel.ts';

/**
 * Bytes waiting for the kernel towards the service, per flow: past this a flood is dropped, never buffered. A
 * read from the gateway's stream can hold hundreds of datagrams at once, all sent before the first completes.
 */
const QUEUE_BYTES_TO_SERVICE = 1 << 20;
/** Bytes waiting on the stream towards the gateway, per flow (about 256 full-size datagrams with their framing). */
const QUEUE_BYTES = 256 * 1_536;

export type LocalDatagrams = { ok: true; socket: Socket } | { ok: false; reason: string };

/** A UDP socket connected to the service's address (the kernel then passes up only the service's datagrams). */
export function openLocalDatagrams(target: { host: string; port: number }, timeoutMs: number): Promise<LocalDatagrams> {
  return new Promise((resolve) => {
    const socket = createSocket(isIP(target.host) === 6 ? 'udp6' : 'udp4');
    let settled = false;
    const settle = (result: LocalDatagrams) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!result.ok) socket.close();
      resolve(result);
    };
    const timer = setTimeout(() => settle({ ok: false, reason: `no socket within ${timeoutMs} ms` }), timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => settle({ ok: false, reason: err.code ?? err.message }));
    socket.connect(target.port, target.host, () => {
      socket.removeAllListeners('error');
      settle({ ok: true, socket });
    });
  });
}

/** Carries one flow between the gateway's stream and the service's socket until the stream ends; `done` gets a summary. */
export function carryDatagrams(stream: ServerHttp2Stream, socket: Socket, done: (summary: string) => void): void {
  const channel = new CapsuleChannel(stream, QUEUE_BYTES);
  const counts = { in: 0, out: 0, droppedIn: 0, droppedOut: 0 };
  let inFlightBytes = 0;
  let lastError: string | undefined;
  channel.onDatagram = (payload) => {
    if (inFlightBytes + payload.length > QUEUE_BYTES_TO_SERVICE) return void (counts.droppedIn += 1);
    const size = payload.length;
    inFlightBytes += size;
    counts.in += 1;
    // The payload is a view into the stream's read: copied so the send owns its bytes.
    socket.send(Buffer.from(payload), () => (inFlightBytes -= size));
  };
  socket.on('message', (payload) => {
    if (channel.send(payload)) counts.out += 1;
    else counts.droppedOut += 1;
  });
  // An ICMP error (the service not listening) comes back on a later send: UDP is lossy, the flow goes on.
  socket.on('error', (err: NodeJS.ErrnoException) => void (lastError = err.code ?? err.message));
  // The gateway reset the stream (the flow ended there): stop at once rather than wait for the reads to drain.
  stream.once('aborted', () => channel.close('gateway reset the stream', true));
  void channel.ended.then((end) => {
    socket.close();
    const dropped = counts.droppedIn + counts.droppedOut > 0 ? `, dropped ${counts.droppedIn} in, ${counts.droppedOut} out` : '';
    done(`${end.reason}${lastError ? ` (service: ${lastError})` : ''}; ${counts.in} datagrams in, ${counts.out} out${dropped}`);
  });
}
