// One admitted UDP flow: its udp.open record, the datagrams carried between the client's channel and the
// upstream socket under the flow's limits (size, rate, queue), the idle timeout, and one udp.close record.
import type { AuditRecord, AuditToken, UdpDrops } from '../audit/auditRecord.ts';
import type { UdpLimits } from '../config/schema.ts';
import type { RouteAdmission } from '../exchange/admit.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { DatagramChannel } from '../tunnel/udpChannel.ts';
import type { DatagramUpstream } from '../upstream/udpUpstream.ts';
import { relayRecord } from '../upstream/relayedUpstreams.ts';
import type { TunnelRegistry } from './tunnelSession.ts';
import { PacketBucket, type IdentityFlows } from './udpLimits.ts';

/** A udp route without `idleTimeoutSeconds`: a flow with no datagram either way for this long is closed. */
export const DEFAULT_UDP_IDLE_TIMEOUT_SECONDS = 120;

export interface UdpFlowOpening {
  exchange: Exchange;
  admission: RouteAdmission;
  token: AuditToken | undefined;
  transport: string;
  limits: UdpLimits;
  /** The identity's share (its buckets), held until `release`. */
  shared: IdentityFlows;
  release(): void;
  registry: TunnelRegistry;
}

export interface OpenUdpFlow {
  /** No datagram will flow (upstream unreachable, client gone): the close record, with `status`. */
  fail(reason: string, status?: number): void;
  /** Carries datagrams until either side ends, the idle timeout, shutdown or revocation; then the close record. */
  run(channel: DatagramChannel, upstreamSide: DatagramUpstream, status: number): void;
}

/** Counts of one flow, written into its close record. */
class FlowCounts {
  packetsIn = 0;
  packetsOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly dropped: Required<UdpDrops> = { oversizeIn: 0, oversizeOut: 0, queueFullIn: 0, queueFullOut: 0, rateIn: 0, rateOut: 0, strangerOut: 0 };

  record(): Partial<AuditRecord> {
    const dropped = Object.fromEntries(Object.entries(this.dropped).filter(([, n]) => n > 0)) as UdpDrops;
    return { bytesIn: this.bytesIn, bytesOut: this.bytesOut, packetsIn: this.packetsIn, packetsOut: this.packetsOut, ...(Object.keys(dropped).length > 0 && { dropped }) };
  }
}

/** Writes `udp.open`; the exchange's last record is `udp.close`. */
export function openUdpFlow(t: UdpFlowOpening): OpenUdpFlow {
  const { exchange, admission, token, transport, limits } = t;
  const { route, upstream } = admission;
  // A published service's flow names its publisher (and the instance it was relayed to), as tunnels do.
  const flow: Partial<AuditRecord> = { route: route.config.name, upstream: upstream.label, ...(upstream.via !== undefined && { publisher: upstream.via }), ...relayRecord(upstream), token };
  exchange.write({ ...flow, event: 'udp.open', decision: 'allow', reason: admission.decision.matched, durationMs: exchange.elapsedMs(), detail: { transport } });
  const opened = performance.now();
  const counts = new FlowCounts();
  const close = (fields: Partial<AuditRecord>, detail: Record<string, unknown> = {}) => {
    t.release();
    exchange.close({ ...flow, event: 'udp.close', durationMs: Math.round(performance.now() - opened), ...counts.record(), ...fields, detail: { transport, ...detail } });
  };
  const idleMs = Math.round((route.config.idleTimeoutSeconds ?? DEFAULT_UDP_IDLE_TIMEOUT_SECONDS) * 1000);

  return {
    fail: (reason, status) => close({ reason, ...(status !== undefined && { status }) }),
    run(channel, upstreamSide, status) {
      const perFlowIn = new PacketBucket(limits.packetsPerSecondPerFlow);
      const perFlowOut = new PacketBucket(limits.packetsPerSecondPerFlow);
      const { toUpstream, toClient } = t.shared;
      let inFlight = 0;
      let lastActivity = performance.now();
      let stopReason: string | undefined;
      const upstreamErrors: string[] = [];

      // Client -> upstream. Checks in order of cost; each drop is counted, never queued.
      channel.onDatagram = (payload) => {
        const now = performance.now();
        lastActivity = now;
        if (payload.length > limits.maxDatagramBytes) return void (counts.dropped.oversizeIn += 1);
        if (!perFlowIn.take(now) || !toUpstream.take(now)) return void (counts.dropped.rateIn += 1);
        // send() copies nothing until the kernel takes it: datagrams waiting for it are the flow's queue.
        if (inFlight >= limits.queuePackets) return void (counts.dropped.queueFullIn += 1);
        inFlight += 1;
        counts.packetsIn += 1;
        counts.bytesIn += payload.length;
        // The payload is a view into the connection's read; copied so the send owns its bytes.
        upstreamSide.send(Buffer.from(payload), () => (inFlight -= 1));
      };
      // Upstream -> client.
      upstreamSide.onDatagram((payload) => {
        const now = performance.now();
        lastActivity = now;
        if (payload.length > limits.maxDatagramBytes) return void (counts.dropped.oversizeOut += 1);
        if (!perFlowOut.take(now) || !toClient.take(now)) return void (counts.dropped.rateOut += 1);
        if (!channel.send(payload)) return void (counts.dropped.queueFullOut += 1);
        counts.packetsOut += 1;
        counts.bytesOut += payload.length;
      });
      // An ICMP error (port unreachable) is reported on the next send or receive: UDP is lossy, the flow goes on.
      upstreamSide.onError((reason) => {
        if (upstreamErrors.length < 5) upstreamErrors.push(reason);
      });

      // Idle and shutdown end the flow cleanly (FIN, close 1000); a revocation or a revoked certificate cuts it.
      const stop = (reason: string) => {
        stopReason ??= reason;
        channel.close(reason, reason !== 'idle timeout' && reason !== 'gateway shutting down');
      };
      let idle: NodeJS.Timeout;
      const armIdle = (ms: number) => {
        idle = setTimeout(() => {
          const quiet = performance.now() - lastActivity;
          if (quiet >= idleMs) stop('idle timeout');
          else armIdle(idleMs - quiet);
        }, ms);
        idle.unref();
      };
      if (idleMs > 0) armIdle(idleMs);

      let recorded!: () => void;
      const written = new Promise<void>((resolve) => (recorded = resolve));
      const forget = t.registry.add((reason) => {
        stop(reason);
        return written;
      }, admission.decision.revocationIds, exchange.conn.id);
      if (!t.registry.accepting) stop('gateway shutting down');
      // An upstream that ends on its own (a publisher gone) cuts the flow: the client must not take it for idle.
      upstreamSide.onEnd((reason) => stop(`upstream ended: ${reason}`));
      void channel.ended.then((end) => {
        clearTimeout(idle);
        forget();
        // The upstream is closed once the channel ends; a send on it afterwards is dropped.
        upstreamSide.close();
        counts.dropped.strangerOut = upstreamSide.strangers?.() ?? 0;
        const reason = stopReason ?? (end.error ? `client error: ${end.reason}` : 'client closed');
        close({ status, reason }, upstreamErrors.length > 0 ? { upstreamErrors } : {});
        recorded();
      });
    },
  };
}
