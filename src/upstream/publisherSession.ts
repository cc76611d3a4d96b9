// One publisher's connection, as the gateway holds it: the HTTP/2 session over the upgraded socket, its
// windows and liveness, and how it ends: lost (an error for every stream it carried), said goodbye, or closed.
import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { socketErrorWords, watchLiveness } from './sessionLiveness.ts';
import { PUBLISH_SESSION_SETTINGS, sizeWindowsToPath } from './publishWindows.ts';

/** How long a lost publisher's finished streams may take to be read before they are dropped. */
const LOST_DRAIN_MS = 30_000;
/** How long a destroyed session may take to report itself closed before the publisher is let go anyway. */
const CLOSE_WAIT_MS = 5_000;

/** What the session handling reads and sets on a registry entry. */
export interface PublisherSession {
  session: ClientHttp2Session | undefined;
  /** The streams open over it (the registry adds each, and removes it once closed). */
  readonly streams: Set<ClientHttp2Stream>;
  streamsOpen: number;
  /** A stream was opened: see that the publisher still answers (sessionLiveness.ts). */
  nudge(): void;
  close(reason: string): void;
  /** Lets the streams it carries finish, opening none (GOAWAY), for up to `deadlineMs`; then ends it as close() does. */
  drain(reason: string, deadlineMs: number): void;
}

/**
 * Runs `entry`'s connection over `socket`, its stream windows up to `maxStreamWindow()` bytes: `withdraw` takes its services out of the registry (on a
 * goodbye, or once it is gone); `settle` is called once with why it went away, when every stream has ended.
 */
export function attachPublisher(entry: PublisherSession, socket: Duplex, maxStreamWindow: () => number, withdraw: () => void, settle: (reason: string) => void): void {
  let reason: string | undefined;
  const session = http2Connect('http://publisher.invalid', {
    createConnection: () => socket,
    // Each stream starts with a small window (what a stalled reader holds); publishWindows.ts grows them with the path.
    settings: PUBLISH_SESSION_SETTINGS,
    // Outbound data queued towards slow streams counts here; the stream windows keep it far below.
    maxSessionMemory: 64,
  });
  entry.session = session;
  /**
   * The publisher is gone without saying goodbye: every stream it carried ends now, as an error that says
   * why (a transfer cut short must never look like a complete one), and its services are withdrawn.
   */
  const lose = (why: string) => {
    reason ??= `publisher lost (${why})`;
    // No new stream goes to it, even while those it carried are still being ended (a retry must go elsewhere).
    withdraw();
    if (session.destroyed) return;
    const cut = new Error(reason);
    // A stream the publisher had finished (its END_STREAM is in) is only waiting to be read: it completes.
    // Every other one is cut, as an error. Then nothing new starts, and the session ends once they are read.
    for (const stream of entry.streams) if (!stream.closed) stream.destroy(cut);
    const end = () => destroy(cut);
    if (entry.streams.size === 0) return end();
    // Not session.close(): towards a peer that is gone, its goodbye may never be written, and it waits for that.
    const draining = [...entry.streams].map((stream) => new Promise((resolve) => stream.once('close', resolve)));
    void Promise.all(draining).then(end);
    setTimeout(end, LOST_DRAIN_MS).unref();
  };
  // Downloads (publisher to user) are received here: windows grow to the path, at most publish.window per stream.
  sizeWindowsToPath(session, { maxStreamWindow: maxStreamWindow(), streamsOpen: () => entry.streamsOpen }, 'connect');
  const liveness = watchLiveness(session, () => entry.streamsOpen > 0, lose);
  entry.nudge = liveness.nudge;
  session.on('error', (err: NodeJS.ErrnoException) => lose(socketErrorWords(err)));
  // A goodbye (GOAWAY: the publisher is stopping): no new streams go to it; those it carries may finish.
  session.on('goaway', () => {
    reason ??= 'publisher said goodbye';
    withdraw();
  });
  // The publisher's side of the connection ended or broke: nothing more can come from it, and Node's own
  // handling only asks open streams to close, which a dead connection never completes.
  // Ahead of HTTP/2's own listeners, so the streams end with this reason rather than a bare socket error.
  socket.prependListener('error', (err: NodeJS.ErrnoException) => lose(socketErrorWords(err)));
  socket.prependOnceListener('end', () => lose('connection closed'));
  socket.prependOnceListener('close', () => lose('connection closed'));
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    liveness.stop();
    entry.session = undefined;
    withdraw();
    socket.destroy();
    settle(reason ?? 'publisher connection closed');
  };
  session.once('close', finish);
  /**
   * Destroys the session; its 'close' waits for the socket's handle to finish, which a wedged connection
   * may never do: the publisher is let go regardless soon after (its record written, its services withdrawn).
   */
  const destroy = (err: Error) => {
    if (!session.destroyed) session.destroy(err);
    setTimeout(finish, CLOSE_WAIT_MS).unref();
  };
  entry.close = (why: string) => {
    reason ??= why;
    // Streams in flight end now, as errors (each forwarder writes its close record); the connection goes with them.
    destroy(new Error(why));
  };
  entry.drain = (why: string, deadlineMs: number) => {
    reason ??= why;
    withdraw();
    // GOAWAY (NO_ERROR): the publisher learns no new stream comes and reconnects later, as after its own
    // goodbye; the session closes once the streams in flight are done (finish writes the record).
    if (!session.closed && !session.destroyed) session.close();
    // What still runs at the deadline is cut, as an error: a transfer cut short must not read as complete.
    setTimeout(() => destroy(new Error(`${why}: drain time over`)), deadlineMs).unref();
  };
}
