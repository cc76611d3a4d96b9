// The soak's long-lived CONNECT tunnels: each sends a little data now and then to a UNIX-socket echo
// service through the gateway and checks that exactly the same bytes come back.
import { randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { closedWithin, readStatus, tcpTo, tlsOver, type ClientCredentials, type Ledger } from './soakLedger.ts';

export interface TunnelOptions {
  port: number;
  creds: ClientCredentials;
  token: string;
  route: string;
  /** Mean time between two pings of one tunnel. */
  pingIntervalMs: number;
  /** An echo not back by then counts as an error. */
  echoTimeoutMs: number;
}

export interface EchoTunnel {
  source: string;
  close(): Promise<boolean>;
}

/** Opens one CONNECT tunnel and starts pinging; rejects (without noting an error) if it could not open. */
export async function openEchoTunnel(opts: TunnelOptions, ledger: Ledger, latencies: number[]): Promise<EchoTunnel> {
  const { socket: tcp, source } = await tcpTo(opts.port, '127.0.0.1');
  ledger.expect('connection', source);
  let tls: TLSSocket;
  try {
    tls = await tlsOver(tcp, opts.creds);
  } catch (err) {
    tcp.destroy();
    throw new Error(`TLS: ${(err as Error).message}`);
  }
  tls.write(`CONNECT ${opts.route}:1 HTTP/1.1\r\nHost: ${opts.route}:1\r\nProxy-Authorization: Bearer ${opts.token}\r\n\r\n`);
  const { status, rest } = await readStatus(tls, 15_000);
  if (status !== 200) {
    tls.destroy();
    throw new Error(`CONNECT answered ${status ?? 'nothing'}`);
  }
  ledger.expect('tunnel', source);
  ledger.count('tunnels opened');

  let closing = false;
  let expected: Buffer | undefined;
  let received = rest;
  let sentAt = 0;
  let late = false;
  let timer: NodeJS.Timeout | undefined;

  const settle = () => {
    if (expected === undefined || received.length < expected.length) return;
    if (!received.subarray(0, expected.length).equals(expected) || received.length > expected.length) {
      ledger.error('echo mismatch', `${source}: sent ${expected.length} bytes, got ${received.length} different`);
    } else {
      ledger.count('echoes');
      latencies.push(performance.now() - sentAt);
    }
    expected = undefined;
    received = Buffer.alloc(0);
  };
  tls.on('data', (d: Buffer) => {
    if (expected === undefined) return void ledger.error('echo unexpected data', `${source}: ${d.length} bytes`);
    received = Buffer.concat([received, d]);
    settle();
  });
  tls.on('error', () => {});
  tls.once('close', () => {
    clearTimeout(timer);
    if (!closing) ledger.error('tunnel dropped', source);
  });

  const tick = () => {
    if (closing) return;
    if (expected !== undefined) {
      if (!late && performance.now() - sentAt > opts.echoTimeoutMs) {
        late = true;
        ledger.error('echo timeout', source);
      }
    } else {
      late = false;
      expected = randomBytes(16 + Math.floor(Math.random() * 240));
      sentAt = performance.now();
      tls.write(expected);
      ledger.count('echo bytes', expected.length);
    }
    timer = setTimeout(tick, opts.pingIntervalMs * (0.5 + Math.random()));
  };
  timer = setTimeout(tick, opts.pingIntervalMs * Math.random());

  return {
    source,
    async close() {
      closing = true;
      clearTimeout(timer);
      // Half-close: the echo service ends its side in turn, so the tunnel ends cleanly from both sides.
      tls.end();
      const closed = await closedWithin(tls, 10_000);
      if (!closed) {
        ledger.error('tunnel close timeout', source);
        tls.destroy();
      }
      if (expected !== undefined && !late) ledger.error('echo lost at close', source);
      return closed;
    },
  };
}

/** Opens `count` tunnels, `parallel` at a time; failures are counted as errors. */
export async function openTunnels(count: number, parallel: number, opts: TunnelOptions, ledger: Ledger, latencies: number[]): Promise<EchoTunnel[]> {
  const tunnels: EchoTunnel[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        tunnels.push(await openEchoTunnel(opts, ledger, latencies));
      } catch (err) {
        ledger.error('tunnel open failed', (err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return tunnels;
}
