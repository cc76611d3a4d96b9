// The publisher's side of published UDP services, over a real HTTP/2 connection on loopback: a datagram stream
// gets its own socket to the service (replies come back on it), and a stream of the wrong kind is refused
// by the publisher itself, whatever a gateway asked for.
import { connect as http2Connect, createServer, type ClientHttp2Session, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PublishSpec } from '../src/client/publishSpec.ts';
import { serveStreams } from '../src/client/publishStreams.ts';
import { DATAGRAMS_HEADER, STREAM_ERROR_HEADER } from '../src/upstream/publishProtocol.ts';
import { CapsuleChannel } from '../src/tunnel/udpChannel.ts';
import { startUdpEcho, type UdpEcho } from './support/udpPeers.ts';

let echo: UdpEcho;
let server: Http2Server;
let session: ClientHttp2Session;

beforeAll(async () => {
  echo = await startUdpEcho();
  const specs: PublishSpec[] = [
    { service: 'dns', target: { kind: 'udp', host: '127.0.0.1', port: echo.port } },
    { service: 'web', target: { kind: 'tcp', host: '127.0.0.1', port: 9 } },
  ];
  // The roles as in `gatehouse publish`: the publisher serves streams the gateway (here the test) opens.
  server = createServer();
  server.on('session', (s) => serveStreams(s, specs));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  session = http2Connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});

afterAll(() => {
  session?.close();
  server?.close();
  echo?.close();
});

function ask(service: string, datagrams: boolean): Promise<{ status: number; headers: IncomingHttpHeaders; channel: CapsuleChannel }> {
  const stream = session.request({ ':method': 'CONNECT', ':authority': service, ...(datagrams && { [DATAGRAMS_HEADER]: '?1' }) }, { endStream: false });
  return new Promise((resolve) => stream.once('response', (headers) => resolve({ status: Number(headers[':status']), headers, channel: new CapsuleChannel(stream, 1 << 20) })));
}

describe('the publisher side of a UDP service', () => {
  it('a datagram stream per flow: each gets its own socket to the service, so replies come back on the flow that asked', async () => {
    const [a, b] = [await ask('dns', true), await ask('dns', true)];
    expect([a.status, b.status]).toEqual([200, 200]);
    const got = { a: [] as string[], b: [] as string[] };
    a.channel.onDatagram = (p) => got.a.push(String(p));
    b.channel.onDatagram = (p) => got.b.push(String(p));
    for (let i = 0; i < 3; i++) a.channel.send(Buffer.from(`a${i}`));
    b.channel.send(Buffer.from('b0'));
    const until = Date.now() + 5000;
    while ((got.a.length < 3 || got.b.length < 1) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(got.a.sort()).toEqual(['a0', 'a1', 'a2']);
    expect(got.b).toEqual(['b0']);
    a.channel.close('done', true);
    b.channel.close('done', true);
  });

  it('refuses a byte stream to a UDP service and a datagram stream to a TCP service, with the reason', async () => {
    const bytes = await ask('dns', false);
    expect(bytes.status).toBe(400);
    expect(bytes.headers[STREAM_ERROR_HEADER]).toBe('dns is a UDP service; only datagram streams reach it');
    const datagrams = await ask('web', true);
    expect(datagrams.status).toBe(400);
    expect(datagrams.headers[STREAM_ERROR_HEADER]).toBe('web is not a UDP service');
  });
});
