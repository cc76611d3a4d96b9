// A userspace WAN for benches and tests (the kernel here has no netem): a loopback TCP proxy that holds
// every chunk for RTT/2 in each direction, in order, with backpressure, so window updates arrive late.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface DelayProxy {
  readonly port: number;
  /** Bytes carried so far, each direction summed. */
  readonly bytes: number;
  close(): Promise<void>;
}

export interface DelayProxyOptions {
  /** Round trip added: each direction holds a chunk for half of it. */
  rttMs: number;
  targetPort: number;
  targetHost?: string;
  /**
   * Bytes one direction may hold before it stops reading its source (bounded memory). It must exceed the
   * bandwidth-delay product being measured, or the proxy itself becomes the window: 64 MiB at 50 ms is 1.3 GB/s.
   */
  maxQueuedBytes?: number;
}

type Held = { due: number; chunk: Buffer } | { due: number; chunk: 'end' };

/** One direction: `from` -> `to`, each chunk written `delayMs` after it was read, in order. */
function delayedPipe(from: Socket, to: Socket, delayMs: number, maxQueued: number, count: (n: number) => void): void {
  const queue: Held[] = [];
  let head = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let waitingForDrain = false;

  const release = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const now = performance.now();
    // Write everything due, stopping when the destination pushes back: order is kept because nothing is skipped.
    while (head < queue.length && !waitingForDrain) {
      const held = queue[head] as Held;
      if (held.due > now) break;
      head += 1;
      if (held.chunk === 'end') {
        to.end();
        continue;
      }
      queued -= held.chunk.length;
      count(held.chunk.length);
      if (!to.write(held.chunk)) waitingForDrain = true;
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue.splice(0, head);
      head = 0;
    }
    if (queued < maxQueued / 2 && from.isPaused()) from.resume();
    schedule();
  };
  const schedule = () => {
    if (timer || waitingForDrain || head >= queue.length) return;
    timer = setTimeout(release, Math.max(0, (queue[head] as Held).due - performance.now()));
  };
  to.on('drain', () => {
    waitingForDrain = false;
    release();
  });
  from.on('data', (chunk: Buffer) => {
    queue.push({ due: performance.now() + delayMs, chunk });
    queued += chunk.length;
    // Bounded memory: a full queue stops reading, so TCP's own flow control reaches the sender.
    if (queued >= maxQueued) from.pause();
    // No delay asked: pass it on now (a 0 ms timer would add a millisecond or more to every hop).
    if (delayMs === 0) release();
    else schedule();
  });
  from.on('end', () => {
    queue.push({ due: performance.now() + delayMs, chunk: 'end' });
    schedule();
  });
  from.on('close', () => {
    if (timer) clearTimeout(timer);
    // An abrupt close (reset) is passed on at once; a clean one has already queued its end.
    if (!from.readableEnded) to.destroy();
  });
}

/** Listens on 127.0.0.1 and forwards each connection to `targetHost:targetPort` through the delay. */
export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const oneWay = options.rttMs / 2;
  const maxQueued = options.maxQueuedBytes ?? 64 << 20;
  const sockets = new Set<Socket>();
  let bytes = 0;
  const count = (n: number) => (bytes += n);
  const server: Server = createServer((client) => {
    const upstream = connect(options.targetPort, options.targetHost ?? '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => s.destroy());
      s.on('close', () => sockets.delete(s));
    }
    delayedPipe(client, upstream, oneWay, maxQueued, count);
    delayedPipe(upstream, client, oneWay, maxQueued, count);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    get bytes() {
      return bytes;
    },
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  };
}
