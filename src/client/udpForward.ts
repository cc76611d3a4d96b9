// `-L udp:[ADDR:]PORT:ROUTE` and `-L unixgram:PATH:ROUTE`: a local UDP port or datagram UNIX socket; each local
// peer gets its own flow through the gateway, opened on its first datagram and closed after the idle timeout.
import type { DatagramChannel } from '../tunnel/udpChannel.ts';
import type { ForwardSpec } from './forwardSpec.ts';
import { bindLocalDatagrams, type LocalPeer } from './localDatagrams.ts';
import { announceReady, formatBytes, type ForwardDeps, type ForwardResult } from './localListeners.ts';
import { describeFailure } from './tunnelFailure.ts';
import type { FlowOpenResult } from './udpDialer.ts';

export interface UdpForwardDeps extends Omit<ForwardDeps, 'open'> {
  open(route: string): Promise<FlowOpenResult>;
  /** A flow with no datagram either way for this long is closed (a new datagram opens another). */
  idleTimeoutMs: number;
}

/** Datagrams held for a flow still opening; more are dropped (UDP drops, it never buffers without bound). */
const PENDING_LIMIT = 64;
/** After a flow could not be opened, its peer's datagrams are dropped this long before it is tried again. */
const RETRY_AFTER_MS = 1000;

interface LocalFlow {
  id: number;
  peer: string;
  channel?: DatagramChannel;
  pending: Buffer[];
  failedUntil?: number;
  lastActivity: number;
  sent: number;
  sentBytes: number;
  received: number;
  receivedBytes: number;
  /** Answers for a peer that cannot be answered (an unbound UNIX sender): dropped. */
  unanswerable: number;
  opened: number;
  idle?: NodeJS.Timeout;
}

let flowCounter = 0;

/** Sends one datagram of the local peer on its flow; one the flow's queue has no room for is dropped (UDP). */
function carry(flow: LocalFlow, channel: DatagramChannel, payload: Buffer): void {
  if (!channel.send(payload)) return;
  flow.sent += 1;
  flow.sentBytes += payload.length;
}

export async function startUdpForward(spec: Extract<ForwardSpec, { kind: 'udp' | 'unixgram' }>, deps: UdpForwardDeps): Promise<ForwardResult> {
  const bound = await bindLocalDatagrams(spec, deps.say);
  if (!bound.ok) return bound;
  const { local } = bound;
  const flows = new Map<string, LocalFlow>();
  let socketClosed = false;

  const end = (flow: LocalFlow, outcome: string, failed: boolean) => {
    clearTimeout(flow.idle);
    if (flows.get(flow.peer) === flow) flows.delete(flow.peer);
    const line = `[${flow.id}] ${flow.peer} -> ${spec.route}: ${outcome}; ${flow.sent} datagrams (${formatBytes(flow.sentBytes)}) sent, ${flow.received} (${formatBytes(flow.receivedBytes)}) received${flow.unanswerable > 0 ? ` (${flow.unanswerable} dropped: the sender has no address to answer)` : ''}, ${((performance.now() - flow.opened) / 1000).toFixed(1)} s`;
    if (deps.verbose) deps.say(line);
    else if (failed) deps.say(`error: ${line}`);
  };

  const armIdle = (flow: LocalFlow, ms: number) => {
    flow.idle = setTimeout(() => {
      const quiet = performance.now() - flow.lastActivity;
      if (quiet < deps.idleTimeoutMs) return armIdle(flow, deps.idleTimeoutMs - quiet);
      flow.channel?.close('idle timeout');
    }, ms);
  };

  const open = async (flow: LocalFlow, sender: LocalPeer) => {
    if (deps.verbose) deps.say(`[${flow.id}] ${flow.peer} -> ${spec.route}: opening`);
    const result = await deps.open(spec.route);
    if (!result.ok) {
      deps.say(`error: [${flow.id}] ${describeFailure(result.failure, deps.gateway, spec.route)}`);
      flow.pending = [];
      flow.failedUntil = performance.now() + RETRY_AFTER_MS;
      return;
    }
    const channel = result.channel;
    // Stopped while this flow was opening: the local socket is gone, so is the flow.
    if (socketClosed) return channel.close('tunnel stopping');
    flow.channel = channel;
    channel.onDatagram = (payload) => {
      if (socketClosed) return; // send() on a closed socket throws
      flow.lastActivity = performance.now();
      if (!sender.reply) return void (flow.unanswerable += 1);
      flow.received += 1;
      flow.receivedBytes += payload.length;
      sender.reply(payload);
    };
    void channel.ended.then((ended) => end(flow, ended.error ? `flow failed: ${ended.reason}` : ended.reason === 'idle timeout' ? 'idle, closed' : `closed (${ended.reason})`, ended.error));
    if (deps.verbose) deps.say(`[${flow.id}] ${flow.peer} -> ${spec.route}: open`);
    for (const payload of flow.pending) carry(flow, channel, payload);
    flow.pending = [];
    if (deps.idleTimeoutMs > 0) armIdle(flow, deps.idleTimeoutMs);
  };

  local.onDatagram((payload, sender) => {
    const peer = sender.key;
    let flow = flows.get(peer);
    const now = performance.now();
    if (flow?.failedUntil !== undefined) {
      if (now < flow.failedUntil) return;
      flows.delete(peer);
      flow = undefined;
    }
    if (!flow) {
      flow = { id: ++flowCounter, peer, pending: [], lastActivity: now, sent: 0, sentBytes: 0, received: 0, receivedBytes: 0, unanswerable: 0, opened: now };
      flows.set(peer, flow);
      void open(flow, sender);
    }
    flow.lastActivity = now;
    if (flow.channel) carry(flow, flow.channel, payload);
    else if (flow.pending.length < PENDING_LIMIT) flow.pending.push(payload);
  });

  const label = local.label;
  announceReady(spec, label, deps);

  let stopped = false;
  const closeAll = (reason: string) => {
    for (const flow of flows.values()) flow.channel?.close(reason);
  };
  return {
    ok: true,
    forward: {
      label,
      ...(local.port !== undefined && { port: local.port }),
      stopListening() {
        if (!stopped) {
          stopped = true;
          local.stopReceiving();
        }
        return Promise.resolve();
      },
      async drain(graceMs) {
        // A datagram flow has no end of its own: what is in flight is given `graceMs` at most, then every flow ends.
        await new Promise((r) => setTimeout(r, Math.min(graceMs, 200)));
        closeAll('tunnel stopping');
        socketClosed = true;
        await local.close();
      },
    },
  };
}
