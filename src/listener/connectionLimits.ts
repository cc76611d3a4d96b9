// Counts the client connections the gateway holds, all listeners together and per source address, and
// refuses those over limits.connections / limits.connectionsPerSource on arrival, before any TLS work.
import type { DropArgument, Server, Socket } from 'node:net';
import type { RefusalRecords } from '../audit/refusalRecords.ts';
import type { GatewayLimits } from '../config/schema.ts';
import { recordRawConnection } from './connectionContext.ts';

/** What the listener reports to metrics; GatewayMetrics provides it. */
export interface ListenerMetrics {
  limitRefused(limit: string): void;
  connectionOpened(): void;
  connectionClosed(): void;
}

export type ConnectionLimit = 'connections' | 'connectionsPerSource';

export interface ConnectionLimits {
  /**
   * Counts and bounds `server`'s accepted sockets; call before it listens. Returns the live set of the
   * sockets it holds (authenticated or not), which shutdown uses to drop the ones TLS never finished.
   * `acceptor` is the server that listens, when another (a PROXY protocol front) accepts for `server`.
   */
  watch(server: Server, acceptor?: Server): ReadonlySet<Socket>;
  /** Client connections open now, all listeners together. */
  readonly open: number;
}

/** UNIX-socket clients have no address: together they are one source. */
const UNIX_SOURCE = 'unix';

export function createConnectionLimits(limits: Pick<GatewayLimits, 'connections' | 'connectionsPerSource'>, refusals: RefusalRecords, metrics?: ListenerMetrics): ConnectionLimits {
  let open = 0;
  const perSource = new Map<string, number>();

  const refuse = (limit: ConnectionLimit, source: string, sourceKey: string) => {
    metrics?.limitRefused(limit);
    const reason =
      limit === 'connections'
        ? `too many connections: limits.connections is ${limits.connections}`
        : `too many connections from ${sourceKey}: limits.connectionsPerSource is ${limits.connectionsPerSource}`;
    // Anyone who can reach the port can be refused: the records are bounded like tls.reject's. The overall
    // limit is keyed as one source, so a crowd of addresses cannot multiply its records either.
    refusals.write({ event: 'connection.reject', source, decision: 'deny', reason, detail: { limit } }, { source: limit === 'connections' ? '*' : sourceKey, kind: limit });
  };

  const release = (sourceKey: string) => {
    open -= 1;
    const left = (perSource.get(sourceKey) ?? 1) - 1;
    if (left > 0) perSource.set(sourceKey, left);
    else perSource.delete(sourceKey);
    metrics?.connectionClosed();
  };

  return {
    watch(server, acceptor = server) {
      const held = new Set<Socket>();
      // Node refuses past this before making a socket at all ('drop'); the shared count below covers
      // several listeners together.
      acceptor.maxConnections = limits.connections;
      acceptor.on('drop', (dropped?: DropArgument) => {
        const ip = dropped?.remoteAddress?.replace(/^::ffff:/, '');
        refuse('connections', ip ? (ip.includes(':') ? `[${ip}]:${dropped?.remotePort}` : `${ip}:${dropped?.remotePort}`) : UNIX_SOURCE, ip || UNIX_SOURCE);
      });
      // First in line, before the TLS server wraps the socket: a refused socket costs no handshake.
      server.prependListener('connection', (raw: Socket) => {
        const record = recordRawConnection(raw);
        const sourceKey = record.sourceIp || UNIX_SOURCE;
        const fromSource = perSource.get(sourceKey) ?? 0;
        const over: ConnectionLimit | undefined = open >= limits.connections ? 'connections' : fromSource >= limits.connectionsPerSource ? 'connectionsPerSource' : undefined;
        if (over) {
          record.dropped = true;
          raw.destroy();
          refuse(over, record.source, sourceKey);
          return;
        }
        open += 1;
        perSource.set(sourceKey, fromSource + 1);
        held.add(raw);
        metrics?.connectionOpened();
        raw.once('close', () => {
          held.delete(raw);
          release(sourceKey);
        });
      });
      return held;
    },
    get open() {
      return open;
    },
  };
}
