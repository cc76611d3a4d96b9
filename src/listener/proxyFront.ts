// The plain TCP server in front of a listener with `proxyProtocol`: it accepts only trusted balancers,
// reads their PROXY header before any TLS byte, and hands the socket on with the client's address.
import { BlockList, createServer, isIPv6, type Server, type Socket } from 'node:net';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import { formatSource, setProxiedSource } from './connectionContext.ts';
import { parseProxyHeader } from './proxyHeader.ts';

export type ProxyRefusal = 'untrusted' | 'invalid' | 'timeout';

export interface ProxyFrontOptions {
  /** CIDRs (or bare addresses) of the balancers allowed to send a PROXY header. */
  trusted: readonly string[];
  /** The whole header must arrive within this many milliseconds of the connection. */
  headerTimeoutMs: number;
  /** Where refusal records go, within their budgets. */
  refusals: RefusalRecords;
  refused?(reason: ProxyRefusal): void;
}

export interface ProxyFront {
  server: Server;
  /** Destroys the sockets whose header has not arrived (shutdown). */
  dropPending(): void;
}

/** `10.0.0.0/8`, `::1`, `2001:db8::/32` into a BlockList (checked when the config is loaded too). */
export function trustedBlockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of cidrs) {
    const [address = '', bits] = entry.split('/');
    const family = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return list;
}

function isTrusted(list: BlockList, ip: string): boolean {
  const bare = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  return list.check(bare, isIPv6(bare) ? 'ipv6' : 'ipv4');
}

/** A server whose accepted sockets reach `next` (the TLS server) through its 'connection' event once their header is read. */
export function createProxyFront(next: Server, options: ProxyFrontOptions): ProxyFront {
  const trusted = trustedBlockList(options.trusted);
  const pending = new Set<Socket>();
  const refuse = (socket: Socket, peer: string, peerIp: string, why: ProxyRefusal, reason: string) => {
    socket.destroy();
    options.refused?.(why);
    // Whoever can reach the port can be refused: bounded records, as for failed handshakes.
    options.refusals.write({ event: 'connection.reject', source: peer, decision: 'deny', reason, detail: { proxyProtocol: why } }, { source: peerIp || peer, kind: `proxy_${why}` });
  };

  const server = createServer((socket: Socket) => {
    const peerIp = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const peer = formatSource(peerIp, socket.remotePort);
    if (!isTrusted(trusted, peerIp)) {
      refuse(socket, peer, peerIp, 'untrusted', `PROXY protocol listener: ${peerIp} is not in proxyProtocol.trusted`);
      return;
    }
    pending.add(socket);
    let received: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => finish({ refusal: 'timeout', reason: `PROXY protocol header not received within ${options.headerTimeoutMs} ms` }), options.headerTimeoutMs);
    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const parsed = parseProxyHeader(received);
      if (parsed.kind === 'incomplete') return;
      if (parsed.kind === 'invalid') {
        finish({ refusal: 'invalid', reason: `PROXY protocol header from trusted ${peer} refused: ${parsed.reason}` });
        return;
      }
      // Without a client address (LOCAL, UNKNOWN, UNIX) the balancer itself is the source, as the spec says.
      const source = parsed.source ? parsed.source : { ip: peerIp, port: socket.remotePort ?? 0 };
      const ip = source.ip.replace(/^::ffff:/, '');
      setProxiedSource(socket, { source: formatSource(ip, source.port), sourceIp: ip, via: peer });
      finish(undefined, received.subarray(parsed.length));
    };
    const onClose = () => finish({ refusal: 'invalid', reason: `connection from trusted ${peer} closed before a complete PROXY protocol header` });
    let done = false;
    const finish = (failure: { refusal: ProxyRefusal; reason: string } | undefined, rest?: Buffer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      pending.delete(socket);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (failure) {
        refuse(socket, peer, peerIp, failure.refusal, failure.reason);
        return;
      }
      // Stop the flow before handing on; what came after the header is the start of the TLS ClientHello,
      // and the TLS socket reads what is buffered on its underlying socket first.
      socket.pause();
      if (rest && rest.length > 0) socket.unshift(rest);
      next.emit('connection', socket);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.on('error', () => socket.destroy());
  });
  return {
    server,
    dropPending: () => {
      for (const socket of pending) socket.destroy();
    },
  };
}
