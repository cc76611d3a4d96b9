// Ships every audit line to a syslog server as RFC 5424 over TCP (optionally TLS, RFC 5425 framing),
// so a central store holds a copy the gateway host cannot rewrite. Never blocks or fails the write path.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface SyslogTarget {
  /** `host:port` of a TCP syslog receiver (rsyslog imtcp, syslog-ng network(), a SIEM). */
  tcp: string;
  /** TLS to the receiver: `ca` verifies it; `cert` + `key` authenticate the gateway (optional). */
  tls?: { ca: string; cert?: string; key?: string; servername?: string };
  /** RFC 5424 facility name (default `authpriv`): the records are security events. */
  facility?: string;
  appName?: string;
}

export interface SyslogObserver {
  /** Bytes handed to the connection, and bytes waiting for it (the shipping lag). */
  shipped(bytes: number, queuedBytes: number): void;
  dropped(): void;
  connected(up: boolean, error?: string): void;
}

export interface SyslogShipper {
  send(line: string): void;
  readonly queuedBytes: number;
  /** Sends what is queued (waits up to `timeoutMs` for a connection) and closes. */
  close(timeoutMs?: number): Promise<void>;
}

const FACILITIES: Record<string, number> = { kern: 0, user: 1, daemon: 3, auth: 4, syslog: 5, authpriv: 10, local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23 };
/** Held while the receiver is unreachable; beyond it the oldest wait and new lines are dropped (counted). */
const MAX_QUEUED_BYTES = 32 * 1024 * 1024;
const SEVERITY_INFO = 6;

/** One RFC 5424 message with octet-counting framing (RFC 6587 / RFC 5425): `LEN SP MSG`. The line is MSG, unchanged. */
export function frameSyslog(line: string, opts: { facility: number; host: string; appName: string; procId: string }): Buffer {
  const header = `<${opts.facility * 8 + SEVERITY_INFO}>1 ${new Date().toISOString()} ${opts.host} ${opts.appName} ${opts.procId} audit - `;
  const message = Buffer.from(header + line, 'utf8');
  return Buffer.concat([Buffer.from(`${message.length} `), message]);
}

function splitHostPort(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)) };
}

/** The files of `target.tls`, read once at start. */
function tlsFiles(target: SyslogTarget): { ca: Buffer; cert?: Buffer; key?: Buffer } | undefined {
  return target.tls && { ca: readFileSync(target.tls.ca), ...(target.tls.cert && { cert: readFileSync(target.tls.cert) }), ...(target.tls.key && { key: readFileSync(target.tls.key) }) };
}

export function startSyslogShipper(target: SyslogTarget, observer?: SyslogObserver): SyslogShipper {
  const { host, port } = splitHostPort(target.tcp);
  const frame = { facility: FACILITIES[target.facility ?? 'authpriv'] ?? 10, host: hostname().split('.')[0] || '-', appName: target.appName ?? 'gatehouse', procId: String(process.pid) };
  const tls = tlsFiles(target);
  const queue: Buffer[] = [];
  let queued = 0;
  let socket: Socket | undefined;
  let ready = false;
  let closing = false;
  let retryMs = 250;
  let retryTimer: NodeJS.Timeout | undefined;

  const flush = () => {
    if (!socket || !ready) return;
    // Writes go to the kernel as fast as it takes them; what it does not take stays queued in Node's
    // socket buffer (counted as shipped) or here (counted as lag), never on the request's path.
    while (queue.length > 0 && socket.writableLength < 1024 * 1024) {
      const chunk = queue.shift() as Buffer;
      queued -= chunk.length;
      socket.write(chunk);
      observer?.shipped(chunk.length, queued);
    }
  };

  const open = () => {
    retryTimer = undefined;
    ready = false;
    const s = tls ? tlsConnect({ host, port, servername: target.tls?.servername ?? host, ...tls }) : netConnect({ host, port });
    socket = s;
    s.setKeepAlive(true, 30_000);
    s.once(tls ? 'secureConnect' : 'connect', () => {
      ready = true;
      retryMs = 250;
      observer?.connected(true);
      flush();
    });
    s.on('drain', flush);
    // A receiver has nothing to say; never let its bytes pile up.
    s.on('data', () => undefined).on('error', (err) => observer?.connected(false, err.message));
    s.on('close', () => {
      if (socket === s) socket = undefined;
      ready = false;
      observer?.connected(false);
      // Bytes in flight on a broken connection are lost (plain syslog has no acknowledgements).
      if (!closing) (retryTimer = setTimeout(open, (retryMs = Math.min(retryMs * 2, 30_000)))).unref();
    });
  };
  open();

  return {
    send(line) {
      const framed = frameSyslog(line, frame);
      if (queued + framed.length > MAX_QUEUED_BYTES) return observer?.dropped();
      queue.push(framed);
      queued += framed.length;
      if (!ready) observer?.shipped(0, queued);
      flush();
    },
    get queuedBytes() {
      return queued;
    },
    close(timeoutMs = 3000) {
      return new Promise((resolve) => {
        const deadline = setTimeout(finish, timeoutMs);
        deadline.unref();
        function finish() {
          if (closing) return;
          closing = true;
          clearTimeout(deadline);
          if (retryTimer) clearTimeout(retryTimer);
          if (socket) socket.end(() => resolve());
          else resolve();
          setTimeout(() => (socket?.destroy(), resolve()), 1000).unref();
        }
        const poll = () => (queue.length === 0 && (!socket || socket.writableLength === 0) ? finish() : setTimeout(poll, 10).unref());
        poll();
      });
    },
  };
}
