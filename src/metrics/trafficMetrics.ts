// Traffic counted from the audit records every stage already writes: requests by protocol, route,
// decision and status, tunnels and UDP flows opened and open, bytes by route, replica retries, reloads, records by event.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AuditRecord } from '../audit/auditRecord.ts';
import { CounterTally } from './counterTally.ts';

/** The counter of one record: called for every record the gateway writes (the hot path: tallies, no label objects). */
export function trafficMetrics(prefix: string, registers: Registry[]): (record: AuditRecord) => void {
  const requests = new CounterTally<'protocol' | 'route' | 'decision' | 'status'>();
  requests.bind(new Counter({ name: `${prefix}requests_total`, help: 'Requests and tunnel attempts by protocol, route, decision and status', labelNames: ['protocol', 'route', 'decision', 'status'], registers, collect: () => requests.flush() }));
  const tunnels = new Counter({ name: `${prefix}tunnels_opened_total`, help: 'Tunnels and WebSocket sessions opened, by protocol and route', labelNames: ['protocol', 'route'], registers });
  const tunnelBytes = new Counter({ name: `${prefix}tunnel_bytes_total`, help: 'Bytes carried by closed tunnels, by direction (in: client to upstream)', labelNames: ['direction'], registers });
  const publishedRetries = new Counter({ name: `${prefix}published_retries_total`, help: 'Requests (http) and tunnels (tunnel) sent again to another replica of a published service after theirs was lost before answering; counted as their records are written', labelNames: ['kind'], registers });
  /** A record's `detail.retried` (replicaRetry.ts): how many replicas were lost under it. */
  const countRetries = (kind: 'http' | 'tunnel', retried: unknown) => {
    if (typeof retried === 'number' && retried > 0) publishedRetries.inc({ kind }, retried);
  };
  const reloads = new Counter({ name: `${prefix}reloads_total`, help: 'Configuration and revocation list reloads by kind and result', labelNames: ['kind', 'result'], registers });
  const openTunnels = new Gauge({ name: `${prefix}open_tunnels`, help: 'Tunnels and proxied WebSockets open now, by protocol (tcp, websocket) and route', labelNames: ['protocol', 'route'], registers });
  const udpFlows = new Counter({ name: `${prefix}udp_flows_opened_total`, help: 'UDP flows opened, by route', labelNames: ['route'], registers });
  const openUdpFlows = new Gauge({ name: `${prefix}open_udp_flows`, help: 'UDP flows open now, by route', labelNames: ['route'], registers });
  const udpPackets = new Counter({ name: `${prefix}udp_packets_total`, help: 'Datagrams carried by closed UDP flows, by direction (in: client to upstream)', labelNames: ['direction'], registers });
  const udpDropped = new Counter({ name: `${prefix}udp_dropped_total`, help: 'Datagrams dropped by closed UDP flows, by direction and cause (oversize, queueFull, rate, stranger)', labelNames: ['direction', 'cause'], registers });
  const routeBytes = new CounterTally<'route' | 'direction'>();
  routeBytes.bind(new Counter({ name: `${prefix}bytes_total`, help: 'Bytes by route and direction (in: client to upstream), HTTP bodies as each request ends and tunnels as each closes', labelNames: ['route', 'direction'], registers, collect: () => routeBytes.flush() }));
  const auditRecords = new CounterTally<'event'>();
  auditRecords.bind(new Counter({ name: `${prefix}audit_records_total`, help: 'Audit records handed to the audit log, by event (see gatehouse_audit_healthy for whether they reached the file)', labelNames: ['event'], registers, collect: () => auditRecords.flush() }));

  return (record) => {
    const event = record.event;
    auditRecords.add(event, () => ({ event }));
    const route = record.route ?? '';
    const countBytes = () => {
      if (record.bytesIn) routeBytes.add(`${route}\u0000in`, () => ({ route, direction: 'in' }), record.bytesIn);
      if (record.bytesOut) routeBytes.add(`${route}\u0000out`, () => ({ route, direction: 'out' }), record.bytesOut);
    };
    switch (record.event) {
      case 'request': {
        const protocol = record.protocol ?? '';
        const decision = record.decision ?? '';
        const status = String(record.status ?? '');
        requests.add(`${protocol}\u0000${route}\u0000${decision}\u0000${status}`, () => ({ protocol, route, decision, status }));
        countBytes();
        countRetries('http', record.detail?.retried);
        break;
      }
      case 'tunnel.open':
        tunnels.inc({ protocol: record.protocol ?? '', route });
        openTunnels.inc({ protocol: record.protocol ?? '', route });
        break;
      case 'tunnel.close':
        openTunnels.dec({ protocol: record.protocol ?? '', route });
        if (record.bytesIn) tunnelBytes.inc({ direction: 'in' }, record.bytesIn);
        if (record.bytesOut) tunnelBytes.inc({ direction: 'out' }, record.bytesOut);
        countBytes();
        countRetries('tunnel', record.detail?.retried);
        break;
      case 'udp.open':
        udpFlows.inc({ route });
        openUdpFlows.inc({ route });
        break;
      case 'udp.close':
        openUdpFlows.dec({ route });
        if (record.packetsIn) udpPackets.inc({ direction: 'in' }, record.packetsIn);
        if (record.packetsOut) udpPackets.inc({ direction: 'out' }, record.packetsOut);
        for (const [key, count] of Object.entries(record.dropped ?? {})) {
          const direction = key.endsWith('In') ? 'in' : 'out';
          if (count) udpDropped.inc({ direction, cause: key.slice(0, -(direction === 'in' ? 2 : 3)) }, count);
        }
        countBytes();
        break;
      case 'config.reload':
      case 'revocation.reload':
        reloads.inc({ kind: record.event === 'config.reload' ? 'config' : record.detail?.crl !== undefined ? 'crl' : 'revocation', result: record.decision === 'deny' ? 'error' : 'ok' });
        break;
      default:
        break;
    }
  };
}
