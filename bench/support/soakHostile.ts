// The soak's trickle of hostile clients: no certificate, garbage bytes, stalled handshakes, bad
// tokens, request smuggling. Each must be refused (and closed) without costing anyone else anything.
import { randomBytes } from 'node:crypto';
import { closedWithin, readStatus, tcpTo, tlsOver, type ClientCredentials, type Ledger } from './soakLedger.ts';

export interface HostileOptions {
  port: number;
  /** The gateway's CA only: for clients that present no certificate. */
  anonymous: ClientCredentials;
  /** A valid client certificate (for attacks past the handshake). */
  creds: ClientCredentials;
  /** A valid token: smuggling attempts are authorized, so only framing stands between them and the upstream. */
  token: string;
  connectionsPerSecond: number;
  /** A stalled handshake must be closed by the gateway within this long. */
  stallLimitMs: number;
}

type Attack = (port: number, localAddress: string, opts: HostileOptions, ledger: Ledger) => Promise<void>;

/** A token that does not verify (base64url of nothing the root key signed). */
const badToken = 'En0KEwoEdXNlcgoFc29hawoEcm9vdBgDIggKBggAEgIYARIkCAASIIhRWxgTbadsignatureAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

const hidden = (tag: string) => `GET /smuggled/${tag} HTTP/1.1\r\nHost: x\r\n\r\n`;
const chunkedEnd = '0\r\n\r\n';
/** Requests whose bodies hide a second request; the upstream must never see `/smuggled`. */
const smuggling = [
  // CL and TE together: the parser must refuse it (400) before any upstream is contacted.
  `POST /soak/cl-te HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${chunkedEnd.length + hidden('cl-te').length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedEnd}${hidden('cl-te')}`,
  // Connection naming the framing field: the upstream must still get exactly one framed request.
  `POST /soak/conn-cl HTTP/1.1\r\nHost: localhost\r\nConnection: content-length\r\nContent-Length: ${hidden('conn-cl').length}\r\n\r\n${hidden('conn-cl')}`,
  // A transfer coding the gateway cannot pass on faithfully, before chunked.
  `POST /soak/te-gzip HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${chunkedEnd}${hidden('te-gzip')}`,
];

/** Sends `request` (with `token` added to its head) over a connection with a valid certificate; checks the status. */
async function withCertificate(port: number, localAddress: string, opts: HostileOptions, ledger: Ledger, request: string, token: string, allowed: number[], what: string): Promise<void> {
  const { socket, source } = await tcpTo(port, localAddress);
  ledger.expect('connection', source);
  const tls = await tlsOver(socket, opts.creds);
  tls.on('error', () => {});
  const headerName = request.startsWith('CONNECT') ? 'Proxy-Authorization' : 'Authorization';
  tls.write(request.replace('\r\n\r\n', `\r\n${headerName}: Bearer ${token}\r\n\r\n`));
  const { status } = await readStatus(tls, 10_000);
  if (status === undefined || !allowed.includes(status)) ledger.error(`${what} answered ${status ?? 'nothing'}`, request.split('\r\n')[0]);
  tls.end();
  if (!(await closedWithin(tls, 10_000))) tls.destroy();
}

const attacks: Record<string, Attack> = {
  'no certificate': async (port, localAddress, opts, ledger) => {
    const { socket, source } = await tcpTo(port, localAddress);
    ledger.expect('reject', source);
    try {
      // TLS 1.3 finishes the client's side before the server checks the certificate: ask for something.
      const tls = await tlsOver(socket, opts.anonymous);
      tls.on('error', () => {});
      tls.write('GET /soak/anonymous HTTP/1.1\r\nHost: localhost\r\n\r\n');
      const { status } = await readStatus(tls, 10_000);
      if (status !== undefined) ledger.error('client without certificate got an answer', String(status));
      tls.destroy();
    } catch {
      socket.destroy(); // refused during the handshake: as it should be
    }
  },
  'garbage bytes': async (port, localAddress, _opts, ledger) => {
    const { socket, source } = await tcpTo(port, localAddress);
    ledger.expect('reject', source);
    socket.on('error', () => {});
    socket.write(randomBytes(64 + Math.floor(Math.random() * 512)));
    if (!(await closedWithin(socket, 10_000))) {
      ledger.error('garbage connection left open');
      socket.destroy();
    }
  },
  'stalled handshake': async (port, localAddress, opts, ledger) => {
    const { socket, source } = await tcpTo(port, localAddress);
    ledger.expect('reject', source);
    socket.on('error', () => {});
    // A TLS record header announcing a ClientHello that never comes.
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const t0 = performance.now();
    if (!(await closedWithin(socket, opts.stallLimitMs))) {
      ledger.error('stalled handshake not closed by the gateway', `after ${opts.stallLimitMs} ms`);
      socket.destroy();
    } else {
      ledger.count('stalled handshakes closed');
      ledger.count('stalled handshake ms', Math.round(performance.now() - t0));
    }
  },
  'bad token': (port, localAddress, opts, ledger) =>
    withCertificate(port, localAddress, opts, ledger, 'GET /soak/bad-token HTTP/1.1\r\nHost: localhost\r\n\r\n', badToken, [401, 403], 'bad token'),
  'bad token CONNECT': (port, localAddress, opts, ledger) =>
    withCertificate(port, localAddress, opts, ledger, 'CONNECT echo:1 HTTP/1.1\r\nHost: echo:1\r\n\r\n', badToken, [401, 403], 'bad token CONNECT'),
  smuggling: (port, localAddress, opts, ledger) =>
    withCertificate(port, localAddress, opts, ledger, smuggling[Math.floor(Math.random() * smuggling.length)] as string, opts.token, [200, 400, 501], 'smuggling'),
};

export interface HostileTrickle {
  stop(): Promise<void>;
}

/**
 * Starts the trickle. Each connection comes from another loopback address (127.0.0.2-201), so the
 * gateway's per-source limits on refusal records do not apply and every refusal must be recorded.
 */
export function startHostileTrickle(opts: HostileOptions, ledger: Ledger): HostileTrickle {
  const kinds = Object.keys(attacks);
  const running = new Set<Promise<void>>();
  let n = 0;
  const timer = setInterval(() => {
    const kind = kinds[n % kinds.length] as string;
    const localAddress = `127.0.0.${2 + (n % 200)}`;
    n++;
    ledger.count(`hostile: ${kind}`);
    const p = (attacks[kind] as Attack)(opts.port, localAddress, opts, ledger)
      .catch((err: unknown) => {
        // Being refused is the point; only failures to even reach the gateway are worth noting.
        if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') ledger.error('hostile client could not connect', kind);
      })
      .finally(() => running.delete(p));
    running.add(p);
  }, 1000 / opts.connectionsPerSecond);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(running);
    },
  };
}
