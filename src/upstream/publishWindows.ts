// Flow-control windows of the publish protocol, for both roles (the receiving end of each direction): every
// stream starts at a small window and grows with the path's measured bandwidth-delay product up to a maximum.
import { constants as h2, type Http2Session } from 'node:http2';

import { INITIAL_STREAM_WINDOW } from '../config/publishWindowBounds.ts';
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
  const windows = new PathWindowSizer(session, sizing);
  session.once(startOn, () => windows.start());
  session.once('close', () => windows.stop());
  return windows;
}

/** The state of one session's sizing: what was granted, acknowledged and measured, and the next look. */
class PathWindowSizer implements PathWindows {
  private readonly session: Http2Session;
  private readonly sizing: WindowSizing;
  private readonly max: number;
  private readonly budget: number;
  private granted = INITIAL_STREAM_WINDOW;
  /** The window the path has asked for so far (it only grows; the stream count may keep `granted` below it). */
  private wanted = INITIAL_STREAM_WINDOW;
  /** The last window the peer acknowledged: a sample measures the peer sending under it (or under `granted`, if lower and not yet acknowledged). */
  private acknowledged = INITIAL_STREAM_WINDOW;
  private measuredRtt: number | undefined;
  private settingsInFlight = false;
  private pingInFlight = false;
  private lastBytes: number;
  private lastDataAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  /** Built once: the look runs every 20 ms while bytes flow. */
  private readonly onTick = (): void => this.tick();

  constructor(session: Http2Session, sizing: WindowSizing) {
    this.session = session;
    this.sizing = sizing;
    this.max = Math.max(INITIAL_STREAM_WINDOW, sizing.maxStreamWindow);
    this.budget = this.max * STREAM_WINDOWS_PER_CONNECTION;
    this.lastBytes = bytesRead(session);
  }

  get streamWindow(): number {
    return this.granted;
  }

  get rttMs(): number | undefined {
    return this.measuredRtt;
  }

  start(): void {
    if (!this.usable()) return;
    // Node's HTTP/2 returns connection window as soon as data is received (only stream windows wait for the
    // reader), so the connection window never holds a stalled reader's bytes: it only must not cap the streams.
    try {
      this.session.setLocalWindowSize(this.budget);
    } catch {
      return;
    }
    this.tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private usable(): boolean {
    return !this.session.destroyed && !this.session.closed;
  }

  /** Grants the window the path wants, within the maximum and this stream count's share of the budget. */
  private grant(): void {
    const share = Math.floor(this.budget / Math.max(1, this.sizing.streamsOpen()));
    const next = Math.max(INITIAL_STREAM_WINDOW, Math.min(this.wanted, this.max, share));
    if (next === this.granted || this.settingsInFlight || !this.usable()) return;
    // Lowering it is allowed too (RFC 9113 6.9.2): streams with more in flight wait until their reader catches up.
    // A window applies only once the peer acknowledges it, so a peer that never does could keep large windows
    // on many streams: past the timeout it loses the connection (RFC 9113 6.5.3, SETTINGS_TIMEOUT).
    const unacknowledged = setTimeout(() => this.session.destroy(undefined, h2.NGHTTP2_SETTINGS_TIMEOUT), SETTINGS_ACK_TIMEOUT_MS);
    unacknowledged.unref();
    try {
      this.settingsInFlight = true;
      this.session.settings({ initialWindowSize: next }, () => {
        clearTimeout(unacknowledged);
        this.settingsInFlight = false;
        this.acknowledged = next;
        // The path may have asked for more meanwhile (a sample during this round trip).
        this.grant();
      });
      this.granted = next;
    } catch {
      clearTimeout(unacknowledged);
      this.settingsInFlight = false;
    }
  }

  /** One PING round trip: the bytes received meanwhile show whether the window limited the peer. */
  private sample(): void {
    const before = bytesRead(this.session);
    const windowDuring = Math.min(this.acknowledged, this.granted);
    try {
      this.pingInFlight = this.session.ping((err, duration) => {
        this.pingInFlight = false;
        if (err || !this.usable()) return;
        this.measuredRtt = duration;
        const bytes = bytesRead(this.session) - before;
        // The peer sent nearly a whole window in one round trip: the window, not the path, was the limit.
        if (bytes >= (windowDuring * 2) / 3) this.wanted = Math.min(this.max, Math.max(this.wanted, nextPowerOfTwo(bytes * 2)));
        this.grant();
      });
    } catch {
      this.pingInFlight = false;
    }
  }

  private tick(): void {
    this.timer = undefined;
    if (!this.usable()) return;
    const now = bytesRead(this.session);
    if (now - this.lastBytes >= BUSY_BYTES) this.lastDataAt = performance.now();
    this.lastBytes = now;
    const busy = performance.now() - this.lastDataAt < Math.max(QUIET_MS, 2 * (this.measuredRtt ?? 0));
    this.grant();
    if (busy && !this.pingInFlight && this.wanted < this.max) this.sample();
    // Idle, nothing can be buffered, so the stream count needs no close watch either.
    this.timer = setTimeout(this.onTick, busy ? BUSY_TICK_MS : this.sizing.streamsOpen() > 0 ? OPEN_TICK_MS : IDLE_TICK_MS);
    this.timer.unref();
  }
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
