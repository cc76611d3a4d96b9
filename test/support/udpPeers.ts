// UDP peers for the end-to-end tests: an echo service, a real DNS server (dnsmasq), a local client that
// sends datagrams and collects the answers, and a raw RFC 9298 client speaking capsules over mTLS.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import type { TLSSocket } from 'node:tls';
import { expect } from 'vitest';
import { CapsuleReader, datagramCapsule, udpPayloadOf } from '../../src/tunnel/capsules.ts';
import type { Harness } from './gatewayHarness.ts';
import type { TestClientCertificate } from './pki.ts';
import { tlsClient, type Watched } from './rawClients.ts';

export interface UdpEcho {
  port: number;
  /** Datagrams the service received, in order. */
  received: Buffer[];
  close(): void;
}

/** Echoes every datagram to its sender; `silent` datagrams (starting with `drop`) are only counted. */
export function startUdpEcho(): Promise<UdpEcho> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const received: Buffer[] = [];
    socket.on('message', (msg, rinfo) => {
      received.push(msg);
      if (!msg.subarray(0, 4).equals(Buffer.from('drop'))) socket.send(msg, rinfo.port, rinfo.address);
    });
    socket.bind(0, '127.0.0.1', () => resolve({ port: socket.address().port, received, close: () => socket.close() }));
  });
}

/** A `protocols: [udp]` route for the tests' routes.yaml. */
export const udpRoute = (name: string, upstream: string, policy = 'allow if user($u), protocol("udp");') => `  - name: ${name}
    protocols: [udp]
    upstream: ${upstream}
    policy: |
      ${policy}
`;

/** Answers `go` with `count` datagrams of 1,400 bytes, as fast as it can: more than any reader that stopped reading holds. */
export function startFirehose(count: number): Promise<{ port: number; close(): void }> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: 'udp4', sendBufferSize: 8 << 20 });
    socket.on('message', (msg, rinfo) => {
      if (String(msg) !== 'go') return;
      const datagram = Buffer.alloc(1400, 0x42);
      for (let i = 0; i < count; i++) socket.send(datagram, rinfo.port, rinfo.address);
    });
    socket.bind(0, '127.0.0.1', () => resolve({ port: socket.address().port, close: () => socket.close() }));
  });
}

/** Two local peers through a `-L udp:` port to an echo: each gets its own datagrams back, none of the other's (a flow per peer). */
export async function expectFlowPerPeer(port: number): Promise<void> {
  const [a, b] = [await udpClient(), await udpClient()];
  try {
    for (let i = 0; i < 5; i++) await a.send(`a-${i}`, port);
    await b.send('b-0', port);
    expect((await a.waitReplies(5)).map(String).sort()).toEqual(['a-0', 'a-1', 'a-2', 'a-3', 'a-4']);
    expect((await b.waitReplies(1)).map(String)).toEqual(['b-0']);
  } finally {
    a.close();
    b.close();
  }
}

/** A local UDP client: sends from one port, collects what comes back. */
export interface UdpClient {
  socket: Socket;
  replies: Buffer[];
  send(payload: Buffer | string, port: number): Promise<void>;
  /** Waits until `count` replies are in (or the timeout); returns them all. */
  waitReplies(count: number, timeoutMs?: number): Promise<Buffer[]>;
  close(): void;
}

export function udpClient(): Promise<UdpClient> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const replies: Buffer[] = [];
    socket.on('message', (msg) => replies.push(msg));
    socket.bind(0, '127.0.0.1', () =>
      resolve({
        socket,
        replies,
        send: (payload, port) => new Promise((ok, fail) => socket.send(payload, port, '127.0.0.1', (err) => (err ? fail(err) : ok()))),
        async waitReplies(count, timeoutMs = 5000) {
          const until = Date.now() + timeoutMs;
          while (replies.length < count && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
          return replies;
        },
        close: () => socket.close(),
      }),
    );
  });
}

/**
 * dnsmasq answering `*.gatehouse.test` with 192.0.2.7 on 127.0.0.1:`port` (or `addresses`), nothing else (no
 * upstream servers). `wrap` runs it under another command (e.g. `ip netns exec NS`).
 */
export function startDnsmasq(port: number, { wrap = [], addresses = ['127.0.0.1'] }: { wrap?: string[]; addresses?: string[] } = {}): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const command = [...wrap, 'dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--bind-interfaces', `--listen-address=${addresses.join(',')}`, `--port=${port}`, '--address=/gatehouse.test/192.0.2.7', '--pid-file=', '--log-facility=-', '--user=root'];
    const proc = spawn(command[0] as string, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    proc.once('exit', (code) => reject(new Error(`dnsmasq exited with ${code}: ${err}`)));
    // dnsmasq binds before it logs that it started; a short wait for its first line is enough.
    const timer = setInterval(() => {
      if (/started/.test(err)) {
        clearInterval(timer);
        resolve(proc);
      }
    }, 20);
  });
}

/** A raw CONNECT-UDP client: the upgrade request written by hand, then capsules read and written by the test. */
export interface RawUdpFlow {
  tls: Watched<TLSSocket>;
  /** The `source` of its records (read while the socket is open). */
  source: string;
  status: number;
  head: string;
  /** Payloads of DATAGRAM capsules received (context 0). */
  datagrams: Buffer[];
  sendDatagram(payload: Buffer): void;
  waitDatagrams(count: number, timeoutMs?: number): Promise<Buffer[]>;
}

/** `early`: bytes written right after the request head, before any answer (datagrams sent optimistically). */
export async function rawConnectUdp(h: Harness, client: TestClientCertificate, token: string, path: string, extraHeaders: string[] = [], early?: Buffer): Promise<RawUdpFlow> {
  const tls = await tlsClient(h, client);
  const source = `127.0.0.1:${tls.socket.localPort}`;
  tls.socket.write([`GET ${path} HTTP/1.1`, `Host: localhost:${h.port}`, 'Connection: Upgrade', 'Upgrade: connect-udp', 'Capsule-Protocol: ?1', `Authorization: Bearer ${token}`, ...extraHeaders, '', ''].join('\r\n') + (early ? early.toString('latin1') : ''), 'latin1');
  const datagrams: Buffer[] = [];
  const reader = new CapsuleReader(70_000);
  let buffered = Buffer.alloc(0);
  let head: string | undefined;
  let status = 0;
  await new Promise<void>((resolve) => {
    tls.socket.on('data', (chunk: Buffer) => {
      if (head === undefined) {
        buffered = Buffer.concat([buffered, chunk]);
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        head = buffered.subarray(0, end).toString('latin1');
        status = Number(head.slice(9, 12));
        chunk = buffered.subarray(end + 4);
        resolve();
      }
      const read = reader.push(chunk);
      if (read.ok) for (const c of read.capsules) if (c.type === 0) {
        const p = udpPayloadOf(c.value);
        if (p.ok && p.payload) datagrams.push(Buffer.from(p.payload));
      }
    });
    tls.socket.once('close', () => resolve());
  });
  return {
    tls,
    source,
    status,
    head: head ?? '',
    datagrams,
    sendDatagram: (payload) => void tls.socket.write(datagramCapsule(payload)),
    async waitDatagrams(count, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      while (datagrams.length < count && Date.now() < until && !tls.isClosed()) await new Promise((r) => setTimeout(r, 20));
      return datagrams;
    },
  };
}
