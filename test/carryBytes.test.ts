// The byte carrier's rule on real TCP sockets: half-close each way delivers every byte and then closes both
// sides cleanly; a side cut short (reset) is passed on as a reset, never as a clean end.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { carryBytes, type Carry, type CarryEnds } from '../src/tunnel/carryBytes.ts';

interface Pair {
  /** The test's end of each side. */
  outside: Socket;
  /** The carrier's end. */
  inside: Socket;
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A connected loopback TCP pair, both ends half-closable. */
async function pair(): Promise<Pair> {
  const server = createServer({ allowHalfOpen: true });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const outside = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((resolve) => outside.once('connect', () => resolve()));
  return { outside, inside: await accepted };
}

/** Everything `socket` reads until it ends or fails: the bytes and how it stopped. */
function collect(socket: Socket): Promise<{ bytes: Buffer; how: 'end' | string }> {
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  return new Promise((resolve) => {
    socket.once('end', () => resolve({ bytes: Buffer.concat(got), how: 'end' }));
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ bytes: Buffer.concat(got), how: err.code ?? err.message }));
  });
}

async function carried(options: Partial<CarryEnds> = {}): Promise<{ client: Pair; upstream: Pair; carry: Carry }> {
  const client = await pair();
  const upstream = await pair();
  const carry = carryBytes({ client: client.inside, upstream: upstream.inside, ...options });
  return { client, upstream, carry };
}

describe('carryBytes', () => {
  for (const onError of ['cut', 'as-close'] as const) {
    it(`${onError}: half-close each way carries every byte, then both sides close cleanly`, async () => {
      const { client, upstream, carry } = await carried({ onError });
      const big = Buffer.alloc(4 << 20, 7);
      const atUpstream = collect(upstream.outside);
      const atClient = collect(client.outside);
      client.outside.end(big);
      const up = await atUpstream;
      // Buffer.equals: a deep comparison of 4 MiB in the matcher takes seconds.
      expect([up.bytes.equals(big), up.how]).toEqual([true, 'end']);
      upstream.outside.end('answer');
      expect(await atClient).toEqual({ bytes: Buffer.from('answer'), how: 'end' });
      const result = await carry.done;
      expect(result).toMatchObject({ bytesIn: big.length, bytesOut: 6, reason: 'client closed' });
      expect(result.error).toBeUndefined();
    });

    it(`${onError}: an upstream reset mid-transfer reaches the client as a reset, not an end`, async () => {
      const { client, upstream, carry } = await carried({ onError });
      const atClient = collect(client.outside);
      client.outside.on('error', () => {});
      upstream.outside.write('partial');
      await new Promise<void>((resolve) => client.outside.once('data', () => resolve()));
      upstream.outside.resetAndDestroy();
      const seen = await atClient;
      expect(seen.how).not.toBe('end');
      expect((await carry.done).reason).toMatch(/^upstream (error|closed)/);
    });
  }

  it('stop() cuts both sides and names the reason', async () => {
    const { client, upstream, carry } = await carried();
    const atClient = collect(client.outside);
    const atUpstream = collect(upstream.outside);
    carry.stop('gateway shutting down', 1001);
    expect((await atClient).how).not.toBe('end');
    expect((await atUpstream).how).not.toBe('end');
    expect((await carry.done).reason).toBe('gateway shutting down');
  });
});
