// Is the other end of a publish connection still there? HTTP/2 pings, both on the gateway and in the
// publisher: rare while nothing is carried, frequent with a short deadline while streams wait on the peer.
import type { Http2Session } from 'node:http2';

export interface LivenessTiming {
  /** With no stream open: ping this often, and give up after this long without the answer. */
  idleEveryMs: number;
  idleTimeoutMs: number;
  /** With streams open (a transfer the user waits on): ping this often... */
  busyEveryMs: number;
  /** ...and give up after this long, or four of the slowest recent round trips if that is longer. */
  busyTimeoutMs: number;
}

export const LIVENESS: LivenessTiming = { idleEveryMs: 15_000, idleTimeoutMs: 10_000, busyEveryMs: 500, busyTimeoutMs: 1_000 };

export interface Liveness {
  /** A stream was opened: a ping that is far off (idle pace) is sent now, and one in flight gets the busy deadline. */
  nudge(): void;
  stop(): void;
}

/**
 * Pings `session` until it closes or `stop()`; calls `lost('ping timeout')` once when neither the answer
 * nor any other byte comes from the peer in time. `onRoundTrip` gets each answered ping's round trip. `busy()` says whether anything is carried now. No call here can throw on a session that
 * closed meanwhile (ping() on a destroyed session throws: that crashed the gateway once).
 */
export function watchLiveness(session: Http2Session, busy: () => boolean, lost: (why: string) => void, onRoundTrip?: (ms: number) => void, timing: LivenessTiming = LIVENESS): Liveness {
  let receivedAtSend = 0;
  let next: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  let nextAt = 0;
  let sentAt: number | undefined;
  /** The slowest recent round trip (ms), decaying: a path whose queues grow under load gets a longer deadline. */
  let slowRtt = 0;
  let stopped = false;
  const gone = () => stopped || session.destroyed || session.closed;

  const stop = () => {
    stopped = true;
    clearTimeout(next);
    clearTimeout(deadline);
  };

  const schedule = (ms: number) => {
    clearTimeout(next);
    nextAt = performance.now() + ms;
    next = setTimeout(probe, ms);
    next.unref();
  };

  // A blocked event loop fires the deadline before it reads the answer that may be waiting in the
  // socket: look again after the poll phase (setImmediate) before calling the peer gone.
  const expired = (): void => {
    if (gone() || sentAt === undefined) return;
    if (received(session) !== receivedAtSend) {
      receivedAtSend = received(session);
      return armDeadline(busyTimeout());
    }
    stop();
    lost('ping timeout');
  };
  const armDeadline = (ms: number) => {
    clearTimeout(deadline);
    deadline = setTimeout(() => setImmediate(expired), ms);
    deadline.unref();
  };

  const busyTimeout = () => Math.max(timing.busyTimeoutMs, 4 * slowRtt);

  // Built once, not per ping: what an answer (or the session's end) does.
  const answered = (err: Error | null, duration: number): void => {
    sentAt = undefined;
    clearTimeout(deadline);
    if (gone() || err) return; // err: the session is ending; its own close says why
    slowRtt = Math.max(duration, slowRtt * 0.8);
    onRoundTrip?.(duration);
    schedule(busy() ? timing.busyEveryMs : timing.idleEveryMs);
  };

  function probe(): void {
    if (gone()) return stop();
    const isBusy = busy();
    const sent = sendPing(session, answered);
    // The session went away between the check and the ping: its close handler reports it.
    if (sent === undefined) return stop();
    if (!sent) return schedule(timing.busyEveryMs); // too many pings outstanding (the peer's window); try later
    sentAt = performance.now();
    receivedAtSend = received(session);
    armDeadline(isBusy ? busyTimeout() : timing.idleTimeoutMs);
  }

  schedule(timing.idleEveryMs);
  session.once('close', stop);
  return {
    nudge() {
      if (gone()) return;
      if (sentAt !== undefined) {
        // A ping already out: the streams now waiting on it should not wait out the idle deadline.
        const left = sentAt + busyTimeout() - performance.now();
        return armDeadline(Math.max(0, left));
      }
      if (nextAt - performance.now() > timing.busyEveryMs) schedule(0);
    },
    stop,
  };
}

/**
 * Bytes read from the peer so far (TLS counts them even while HTTP/2 consumes the socket): a peer whose
 * bytes keep coming is alive, however long its answer to a ping waits behind its data.
 */
function received(session: Http2Session): number {
  return session.socket?.bytesRead ?? 0;
}

/** Sends one ping: false when too many are outstanding, undefined when the session is gone (ping() throws then). */
function sendPing(session: Http2Session, answered: (err: Error | null, duration: number) => void): boolean | undefined {
  try {
    return session.ping(answered);
  } catch {
    return undefined;
  }
}

/** A connection's error in the words of a record: "connection reset" rather than ECONNRESET. */
export function socketErrorWords(err: NodeJS.ErrnoException): string {
  if (err.code === 'ECONNRESET') return 'connection reset';
  if (err.code === 'EPIPE') return 'connection closed';
  return err.code ?? err.message;
}
