// The HTTP forwarder's upstream connections against a real UNIX-socket server: one connection per lent
// exchange, waiting at the bound, and a discarded exchange ending exactly its own connection.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUpstreamPools, type Lease } from '../src/forward/upstreamPools.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let dir: string;
let socketPath: string;
const open = new Set<Socket>();
let accepted = 0;
// Reads requests and never answers: an exchange stays under way until someone ends it.
const silent = createServer((socket) => {
  accepted += 1;
  open.add(socket);
  socket.on('close', () => open.delete(socket));
  socket.on('error', () => {});
  socket.resume();
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-pools-'));
  socketPath = join(dir, 'silent.sock');
  await new Promise<void>((ok) => silent.listen(socketPath, ok));
});

afterAll(async () => {
  for (const s of open) s.destroy();
  await new Promise<void>((ok) => silent.close(() => ok()));
  rmSync(dir, { recursive: true, force: true });
});

async function until(check: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await sleep(20);
}

describe('upstream pools', () => {
  it('lends at most 256 connections to one upstream; the next exchange waits for a released one', async () => {
    const pools = createUpstreamPools();
    const leases: Lease[] = [];
    for (let i = 0; i < 256; i++) {
      const lease = pools.acquire({ socketPath, host: 'localhost' });
      expect(lease).not.toBeInstanceOf(Promise);
      leases.push(lease as Lease);
    }
    expect(new Set(leases.map((l) => l.dispatcher)).size).toBe(256);
    const waiting = pools.acquire({ socketPath, host: 'localhost' });
    expect(waiting).toBeInstanceOf(Promise);
    (leases[7] as Lease).release();
    expect((await waiting)?.dispatcher).toBe((leases[7] as Lease).dispatcher);
    pools.close();
  });

  it('a client that leaves while waiting gives up its place: the waiting line does not grow with clients long gone', async () => {
    const pools = createUpstreamPools();
    const address = { socketPath, host: 'localhost' };
    const leases = Array.from({ length: 256 }, () => pools.acquire(address) as Lease);
    // 1,000 clients arrive while every connection is busy, and each leaves before one is free.
    const gone = Array.from({ length: 1000 }, () => {
      let leave = () => {};
      const waiting = pools.acquire(address, (cancel) => (leave = cancel));
      leave();
      return waiting;
    });
    expect(await Promise.all(gone)).toEqual(Array.from({ length: 1000 }, () => undefined));
    // A released connection goes to nobody of those: it is free for the next exchange at once.
    const released = leases[3] as Lease;
    released.release();
    const next = pools.acquire(address);
    expect(next).not.toBeInstanceOf(Promise);
    expect((next as Lease).dispatcher).toBe(released.dispatcher);
    pools.close();
  });

  it('shutdown gives up every waiting exchange and lends nothing after it', async () => {
    const pools = createUpstreamPools();
    const address = { socketPath, host: 'localhost' };
    const leases = Array.from({ length: 256 }, () => pools.acquire(address) as Lease);
    const waiting = pools.acquire(address);
    pools.close();
    expect(await waiting).toBeUndefined();
    // A lease discarded after shutdown opens no connection in its place.
    const before = accepted;
    (leases[0] as Lease).discard();
    await sleep(100);
    expect(accepted).toBe(before);
  });

  it('a discarded exchange closes its own upstream connection, and no other is opened in its place', async () => {
    const pools = createUpstreamPools();
    const before = accepted;
    const lease = (n: number) => {
      const l = pools.acquire({ socketPath, host: 'localhost' }) as Lease;
      void l.dispatcher.request({ method: 'GET', path: `/${n}` }).catch(() => {});
      return l;
    };
    const first = lease(1);
    lease(2);
    await until(() => accepted - before === 2 && open.size === 2);
    expect(open.size).toBe(2);
    first.discard();
    await until(() => open.size === 1);
    await sleep(300);
    expect(open.size, 'connections still open').toBe(1);
    expect(accepted - before, 'connections the upstream accepted').toBe(2);
    pools.close();
    await until(() => open.size === 0);
    expect(open.size).toBe(0);
  });
});
