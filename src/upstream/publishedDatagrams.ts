// A published UDP service as one flow's upstream: a publisher stream (marked as datagrams) carrying DATAGRAM
// capsules both ways, the publisher opening one local UDP socket per stream. A stream cut ends the flow as an error.
import type { Duplex } from 'node:stream';
import { CapsuleChannel } from '../tunnel/udpChannel.ts';
import type { UpstreamOpener } from './openUpstream.ts';
import type { DatagramUpstream, OpenedDatagramUpstream } from './udpUpstream.ts';
import type { UpstreamTarget } from './upstreamTarget.ts';

/** Where a flow's publisher streams come from, and the flow's queue in bytes (its queuePackets of full-size datagrams). */
export interface PublishedDatagramStreams {
  streams: Pick<UpstreamOpener, 'open'>;
  queueBytes: number;
}

/**
 * The flow's side of a publisher stream: datagrams as capsules; the stream's end, unless we ended it, ends the flow.
 * What waits on the stream beyond its flow-control window is bounded by the flow (the datagrams whose `sent`
 * has not come, each counted as dropped past its queue); `queueBytes` is that same bound, so the channel never
 * drops one the flow counted as carried.
 */
export function publishedDatagrams(stream: Duplex, queueBytes: number): DatagramUpstream {
  const channel = new CapsuleChannel(stream, queueBytes);
  let closing = false;
  return {
    send(payload, sent) {
      // The capsule is written once the stream's window has room: until then it counts in the flow's queue.
      if (!channel.send(payload, sent)) sent();
    },
    onDatagram(receive) {
      channel.onDatagram = receive;
    },
    // Nothing on a publisher stream is a passing error: the publisher's local ICMP errors stay there.
    onError: () => undefined,
    onEnd(ended) {
      // A publisher gone, or its stream reset, ends the flow; a clean end is still an end the client did not ask for.
      void channel.ended.then((end) => {
        if (closing) return;
        // A cut stream's error is the publisher session's own words ("publisher lost (ping timeout)"): kept as they are.
        ended(end.error ? end.reason.replace(/^connection error: /, '') : `publisher ended the flow (${end.reason})`);
      });
    },
    close() {
      closing = true;
      // UDP has no orderly end: the stream is reset, and the publisher closes its socket to the service.
      channel.close('flow closed', true);
    },
  };
}

/** A stream to the published UDP service `target` names, as a flow's upstream; refused as the stream would be. */
export async function openPublishedDatagrams(target: Extract<UpstreamTarget, { kind: 'published' }>, timeoutMs: number, { streams, queueBytes }: PublishedDatagramStreams): Promise<OpenedDatagramUpstream> {
  const opened = await streams.open(target, timeoutMs, { datagrams: true });
  return opened.ok ? { ok: true, upstream: publishedDatagrams(opened.stream, queueBytes) } : opened;
}
