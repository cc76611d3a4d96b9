// The gateway's tunnels (CONNECT, the WebSocket tunnel endpoint, proxied WebSocket upgrades) carried by the
// one byte carrier, with the gateway's choices: a cut upstream is destroyed with the error, never reset.
import { carryBytes, stopError, type Carry, type CarryEnds, type CarryResult, type Cut } from '../tunnel/carryBytes.ts';

export { stopError, type Side } from '../tunnel/carryBytes.ts';

export type SpliceEnds = Omit<CarryEnds, 'cut' | 'onError' | 'lingerMs' | 'corkReads'> & { idleTimeoutMs: number };
export type SpliceResult = CarryResult;
export type Splice = Carry;

/**
 * The upstream (a UNIX socket, a TCP address, a published service's stream) is destroyed with the error,
 * not reset, as the gateway always did; the cut is reported to the client and in the audit record.
 */
const destroyUpstream: Cut = (stream, err) => {
  // Always with an error: a published service's HTTP/2 stream destroyed without one is reset with CANCEL,
  // which an older publisher reads as the end of the upload.
  if (!stream.destroyed) stream.destroy(err ?? stopError('the client cut the transfer', 1011));
};

/** Carries a tunnel's bytes until both sides are done (see carryBytes for the rule). */
export function splice(ends: SpliceEnds): Splice {
  return carryBytes({ ...ends, cut: { upstream: destroyUpstream } });
}
