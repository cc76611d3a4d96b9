// HTTP/2 receive windows sized to the path, on both ends of a publish connection (like HPN-SSH's dynamic
// windows): a window that one round trip fills is grown, up to a maximum, so a WAN is not window-limited.
import type { Http2Session } from 'node:http2';

/** Where every stream's window starts: what one stalled reader holds on a path nobody has measured. */
export const START_STREAM_WINDOW = 256 << 10;
/** The default maximum per stream (config `publish.maxStreamWindowKiB`): about 80 MB/s at 100 ms. */
export const DEFAULT_MAX_STREAM_WINDOW = 8 << 20;
const MIN_CONNECTION_WINDOW = 16 << 20;
/** The connection window holds this many full stream windows: a few stalled readers cannot stop the rest. */
const STREAMS_PER_CONNECTION_WINDOW = 8;

export interface WindowTuner {
  /** Once the session is up: the starting windows (the connection's is far above HTTP/2's 64 KiB default). */
  begin(): void;
  /** A ping's round trip (ms): the bytes received since the last sample tell how full the window ran. */
  sample(rttMs: number): void;
  readonly streamWindow: number;
}

/**
 * Grows `session`'s stream windows (a SETTINGS change applies to every open stream at once) while the
 * bytes received per round trip come near the window: doubled at half, quadrupled at three quarters,
 * never past `maxWindow()` (read at each sample, so a reload applies; a lower one shrinks the windows).
 */
export function tuneWindows(session: Http2Session, maxWindow: () => number): WindowTuner {
  let window = START_STREAM_WINDOW;
  const received = () => session.socket?.bytesRead ?? 0;
  let lastBytes = received();
  let lastAt = performance.now();

  const apply = (next: number) => {
    if (session.destroyed || session.closed) return;
    try {
      session.settings({ initialWindowSize: next });
      session.setLocalWindowSize(Math.max(MIN_CONNECTION_WINDOW, STREAMS_PER_CONNECTION_WINDOW * next));
      window = next;
    } catch {
      // The session ended between the check and the change: nothing to size any more.
    }
  };

  return {
    begin: () => apply(window),
    get streamWindow() {
      return window;
    },
    sample(rttMs) {
      const now = performance.now();
      const bytes = received();
      const elapsed = now - lastAt;
      if (elapsed < 50) return;
      // Bytes the path carried per round trip at the rate of the last interval: near the window, the window is the limit.
      const perRoundTrip = ((bytes - lastBytes) / elapsed) * Math.max(rttMs, 1);
      lastBytes = bytes;
      lastAt = now;
      const max = Math.max(START_STREAM_WINDOW, maxWindow());
      const grown = perRoundTrip >= 0.75 * window ? window * 4 : perRoundTrip >= 0.5 * window ? window * 2 : window;
      const next = Math.min(max, grown);
      if (next !== window) apply(next);
    },
  };
}
