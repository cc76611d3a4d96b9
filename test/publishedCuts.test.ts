// A cut on either side of a published service's HTTP/2 stream reaches the other side as a cut, never as a
// clean end: with the publisher's own stream serving (serveStreams) and the gateway's splice (byteSplice), over real sockets.
import { connect as h2connect, createServer as h2server, type ClientHttp2Session, type ClientHttp2Stream, type Http2Server } from 'node:http2';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePublishSpec } from '../src/client/publishSpec.ts';
import { serveStreams } from '../src/client/publishStreams.ts';
import { splice } from '../src/forward/byteSplice.ts';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

const listening = async <T extends Server | Http2Server>(server: T): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
};

/** How `socket`'s input ended: 'end' (a FIN: a complete transfer) or its error code, and the bytes read. */
function ending(socket: Socket): Promise<{ how: string; bytes: number }> {
  let bytes = 0;
  socket.on('data', (d: Buffer) => (bytes += d.length));
  return new Promise((resolve) => {
    socket.once('end', () => resolve({ how: 'end', bytes }));
    socket.once('error', (err: NodeJS.ErrnoException) => resolve({ how: err.code ?? err.message, bytes }));
  });
}

/** A publisher (serveStreams) for `service` on a local TCP port, and the gateway's session to it. */
async function publisherFor(onService: (socket: Socket) => void): Promise<{ session: ClientHttp2Session; open: () => Promise<ClientHttp2Stream> }> {
  const service = createServer({ allowHalfOpen: true }, onService);
  const port = await listening(service);
  const spec = parsePublishSpec(`svc=${port}`);
  if (!spec.ok) throw new Error(spec.error);
  // The publisher's side of the connection: it serves the streams the gateway opens (as after registration).
  const h2 = h2server();
  h2.on('session', (session) => serveStreams(session as never, [spec.spec]));
  const h2port = await listening(h2);
  const session = h2connect(`http://127.0.0.1:${h2port}`);
  closers.push(() => session.destroy(), () => h2.close(), () => service.close());
  const open = () =>
    new Promise<ClientHttp2Stream>((resolve, reject) => {
      const stream = session.request({ ':method': 'CONNECT', ':authority': 'svc' });
      stream.once('response', () => resolve(stream));
      stream.once('error', reject);
    });
  return { session, open };
}

/** The user's TCP connection to the gateway: the test's end and the gateway's end. */
async function userConnection(): Promise<{ user: Socket; gatewaySide: Socket }> {
  const server = createServer({ allowHalfOpen: true });
  const port = await listening(server);
  closers.push(() => server.close());
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const user = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  return { user, gatewaySide: await accepted };
}

describe('a published service\'s stream cut on one side', () => {
  it('a service that resets mid-download: the user sees a reset, not a complete download', async () => {
    const { open } = await publisherFor((socket) => {
      socket.write(Buffer.alloc(100_000, 7));
      setTimeout(() => socket.resetAndDestroy(), 100);
    });
    const stream = await open();
    const { user, gatewaySide } = await userConnection();
    const userEnded = ending(user);
    const carried = splice({ client: gatewaySide, upstream: stream, idleTimeoutMs: 0 });
    const result = await userEnded;
    expect(result.how).toBe('ECONNRESET');
    expect((await carried.done).reason).not.toMatch(/closed$/);
  });

  it('a user whose connection is reset mid-upload: the service sees a reset, not the end of the upload', async () => {
    let serviceEnded!: Promise<{ how: string; bytes: number }>;
    const connected = new Promise<void>((resolve) => {
      void publisherFor((socket) => {
        serviceEnded = ending(socket);
        resolve();
      }).then(async ({ open }) => {
        const stream = await open();
        const { user, gatewaySide } = await userConnection();
        splice({ client: gatewaySide, upstream: stream, idleTimeoutMs: 0 });
        user.write(Buffer.alloc(100_000, 9));
        setTimeout(() => user.resetAndDestroy(), 100);
      });
    });
    await connected;
    const result = await serviceEnded;
    expect(result.how).toBe('ECONNRESET');
  });
});
