// Flow-control windows of the publish protocol, for both roles (the receiving end of each direction): every
// stream starts at a small window and grows with the path's measured bandwidth-delay product up to a maximum.
import { constants as h2, type Http2Session } from 'node:http2';

/** A stream's receive window before the path is measured: what a stalled reader holds on a fresh connection. */
export const INITIAL_STREAM_WINDOW = 256 << 10;
/** Default largest stream window (`publish.window`, `gatehouse publish --window`): 16 MiB carries 335 MB/s at 50 ms. */
export const DEFAULT_MAX_STREAM_WINDOW = 16 << 20;
/** Bounds of the configured maximum: HTTP/2's own ceiling is 2^31-1; 1 GiB is far beyond any path here. */
export const MIN_STREAM_WINDOW = INITIAL_STREAM_WINDOW;
export const MAX_STREAM_WINDOW = 1 << 30;
/**
 * All streams of one connection together are granted at most this many maximum windows: with more streams
 * open, each one's window shrinks (never below the initial one), so stalled readers cannot add up unbounded.
 */
export const STREAM_WINDOWS_PER_CONNECTION = 4;

/** The SETTINGS both roles open a publish session with. */
export const PUBLISH_SESSION_SETTINGS = { initialWindowSize: INITIAL_STREAM_WINDOW, enablePush: false } as const;

export interface WindowSizing {
  /** The largest window one stream may get: what one stalled reader may leave unread at this end. */
  maxStreamWindow: number;
  /** Streams open on the session now (the budget is shared among them). */
  streamsOpen: () => number;
}

export interface PathWindows {
  /** The stream window granted now (SETTINGS_INITIAL_WINDOW_SIZE of this end). */
  readonly streamWindow: number;
  /** The last measured round trip (PING), in ms; undefined until measured. */
  readonly rttMs: number | undefined;
}

/**
 * While bytes flow, the windows are looked at this often (and one PING sample runs at a time); with streams
 * open but quiet, often enough that a transfer starting is sampled within a few round trips; idle, rarely.
 */
const BUSY_TICK_MS = 20;
const OPEN_TICK_MS = 100;
const IDLE_TICK_MS = 500;
/** Less than this received since the last look is no data: PING acks and window updates alone must not keep sampling going. */
const BUSY_BYTES = 16 << 10;
/**
 * The connection is idle only after no data for this long, or two round trips if longer: over a long path a
 * window-limited stream's data comes in bursts, one window per round trip with silence between, and a look
 * that fell in the silence must not slow sampling to the idle pace (the windows then grew every 500 ms).
 */
const QUIET_MS = 200;
const SETTINGS_ACK_TIMEOUT_MS = 10_000;

const nextPowerOfTwo = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/**
 * Sizes the receive windows of `session` from its `startOn` event (`connect` for the gateway's client session,
 * `localSettings` for the publisher's): the connection window is the whole budget at once, and the stream
 * window doubles when a PING round trip shows the peer had nearly a full window in flight (as gRPC's BDP
 * estimator does), up to `maxStreamWindow` and the budget's share per open stream.
 */
export function sizeWindowsToPath(session: Http2Session, sizing: WindowSizing, startOn: 'connect' | 'localSettings'): PathWindows {
  const max = Math.max(INITIAL_STREAM_WINDOW, sizing.maxStreamWindow);
  const budget = max * STREAM_WINDOWS_PER_CONNECTION;
  let granted = INITIAL_STREAM_WINDOW;
  /** The window the path has asked for so far (it only grows; the stream count may keep `granted` below it). */
  let wanted = INITIAL_STREAM_WINDOW;
  /** The last window the peer acknowledged: a sample measures the peer sending under it (or under `granted`, if lower and not yet acknowledged). */
  let acknowledged = INITIAL_STREAM_WINDOW;
  let rttMs: number | undefined;
  let settingsInFlight = false;
  let pingInFlight = false;
  let lastBytes = bytesRead(session);
  let lastDataAt = -Infinity;
  let timer: NodeJS.Timeout | undefined;

  const usable = () => !session.destroyed && !session.closed;

  const grant = () => {
    const share = Math.floor(budget / Math.max(1, sizing.streamsOpen()));
    const next = Math.max(INITIAL_STREAM_WINDOW, Math.min(wanted, max, share));
    if (next === granted || settingsInFlight || !usable()) return;
    // Lowering it is allowed too (RFC 9113 6.9.2): streams with more in flight wait until their reader catches up.
    // A window applies only once the peer acknowledges it, so a peer that never does could keep large windows
    // on many streams: past the timeout it loses the connection (RFC 9113 6.5.3, SETTINGS_TIMEOUT).
    const unacknowledged = setTimeout(() => session.destroy(undefined, h2.NGHTTP2_SETTINGS_TIMEOUT), SETTINGS_ACK_TIMEOUT_MS);
    unacknowledged.unref();
    try {
      settingsInFlight = true;
      session.settings({ initialWindowSize: next }, () => {
        clearTimeout(unacknowledged);
        settingsInFlight = false;
        acknowledged = next;
        // The path may have asked for more meanwhile (a sample during this round trip).
        grant();
      });
      granted = next;
    } catch {
      clearTimeout(unacknowledged);
      settingsInFlight = false;
    }
  };

  const sample = () => {
    const before = bytesRead(session);
    const windowDuring = Math.min(acknowledged, granted);
    try {
      pingInFlight = session.ping((err, duration) => {
        pingInFlight = false;
        if (err || !usable()) return;
        rttMs = duration;
        const bytes = bytesRead(session) - before;
        // The peer sent nearly a whole window in one round trip: the window, not the path, was the limit.
        if (bytes >= (windowDuring * 2) / 3) wanted = Math.min(max, Math.max(wanted, nextPowerOfTwo(bytes * 2)));
        grant();
      });
    } catch {
      pingInFlight = false;
    }
  };

  const tick = () => {
    timer = undefined;
    if (!usable()) return;
    const now = bytesRead(session);
    if (now - lastBytes >= BUSY_BYTES) lastDataAt = performance.now();
    lastBytes = now;
    const busy = performance.now() - lastDataAt < Math.max(QUIET_MS, 2 * (rttMs ?? 0));
    grant();
    if (busy && !pingInFlight && wanted < max) sample();
    // Idle, nothing can be buffered, so the stream count needs no close watch either.
    timer = setTimeout(tick, busy ? BUSY_TICK_MS : sizing.streamsOpen() > 0 ? OPEN_TICK_MS : IDLE_TICK_MS);
    timer.unref();
  };
  session.once(startOn, () => {
    if (!usable()) return;
    // Node's HTTP/2 returns connection window as soon as data is received (only stream windows wait for the
    // reader), so the connection window never holds a stalled reader's bytes: it only must not cap the streams.
    try {
      session.setLocalWindowSize(budget);
    } catch {
      return;
    }
    tick();
  });
  session.once('close', () => timer && clearTimeout(timer));

  return {
    get streamWindow() {
      return granted;
    },
    get rttMs() {
      return rttMs;
    },
  };
}

/** Bytes received on the session's connection so far (0 once it is gone: Node throws for an unbound socket). */
function bytesRead(session: Http2Session): number {
  try {
    const socket = session.socket as { bytesRead?: number } | undefined;
    return typeof socket?.bytesRead === 'number' ? socket.bytesRead : 0;
  } catch {
    return 0;
  }
}
