// A raw RFC 9298 §3.5 client over node:http2 for tests: one HTTP/2 session to the gateway (ALPN h2 alone, the
// client certificate), extended CONNECT streams on it, DATAGRAM capsules read and written by hand.
import { connect as connectH2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders, type Settings } from 'node:http2';
import { connect as connectTls } from 'node:tls';
import { CapsuleReader, datagramCapsule, udpPayloadOf } from '../../src/tunnel/capsules.ts';
import type { Harness } from './gatewayHarness.ts';
import type { TestClientCertificate } from './pki.ts';

export interface RawH2Session {
  session: ClientHttp2Session;
  /** The gateway's SETTINGS. */
  settings: Settings;
  /** The `source` of the connection's records. */
  source: string;
  closed: Promise<void>;
}

export async function rawH2Session(h: Harness, client: TestClientCertificate): Promise<RawH2Session> {
  const socket = connectTls({ host: '127.0.0.1', port: h.port, servername: 'localhost', ca: h.pki.caCert, cert: client.cert, key: client.key, ALPNProtocols: ['h2'] });
  const session = connectH2(`https://localhost:${h.port}`, { createConnection: () => socket });
  session.on('error', () => {});
  const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
  const settings = await new Promise<Settings>((resolve, reject) => {
    session.once('remoteSettings', resolve);
    session.once('close', () => reject(new Error('session closed before the settings')));
  });
  return { session, settings, source: `127.0.0.1:${socket.localPort}`, closed };
}

export interface RawH2Flow {
  stream: ClientHttp2Stream;
  status: number;
  headers: IncomingHttpHeaders;
  /** The response body (a refusal's JSON), once the stream ended. */
  body(): Promise<string>;
  datagrams: Buffer[];
  sendDatagram(payload: Buffer): void;
  waitDatagrams(count: number, timeoutMs?: number): Promise<Buffer[]>;
  /** Resolves with the RST_STREAM code (0 for a clean end) once the stream closed. */
  closed: Promise<number>;
}

/** Opens an extended CONNECT stream; `headers` add to or replace the RFC's own (undefined drops one). */
export async function rawH2ConnectUdp(s: RawH2Session, token: string, path: string, headers: OutgoingHttpHeaders = {}): Promise<RawH2Flow> {
  const request: OutgoingHttpHeaders = { ':method': 'CONNECT', ':protocol': 'connect-udp', ':scheme': 'https', ':path': path, ':authority': 'localhost', 'capsule-protocol': '?1', authorization: `Bearer ${token}`, ...headers };
  for (const [k, v] of Object.entries(request)) if (v === undefined) delete request[k];
  const stream = s.session.request(request);
  stream.on('error', () => {});
  const closed = new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? 0)));
  const datagrams: Buffer[] = [];
  const chunks: Buffer[] = [];
  const reader = new CapsuleReader(70_000);
  const answer = await new Promise<{ status: number; headers: IncomingHttpHeaders }>((resolve) => {
    stream.once('response', (h) => resolve({ status: Number(h[':status']), headers: h }));
    void closed.then(() => resolve({ status: 0, headers: {} }));
  });
  // A refused request is over: the client ends its side, as a client that got its answer does.
  if (answer.status !== 200 && !stream.closed) stream.end();
  stream.on('data', (chunk: Buffer) => {
    if (answer.status !== 200) return void chunks.push(chunk);
    const read = reader.push(chunk);
    if (read.ok) for (const c of read.capsules) if (c.type === 0) {
      const p = udpPayloadOf(c.value);
      if (p.ok && p.payload) datagrams.push(Buffer.from(p.payload));
    }
  });
  return {
    stream,
    ...answer,
    body: async () => {
      await closed;
      return Buffer.concat(chunks).toString('utf8');
    },
    closed,
    datagrams,
    sendDatagram: (payload) => void stream.write(datagramCapsule(payload)),
    async waitDatagrams(count, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      while (datagrams.length < count && Date.now() < until && !stream.closed) await new Promise((r) => setTimeout(r, 20));
      return datagrams;
    },
  };
}
