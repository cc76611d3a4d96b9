// A datagram UNIX socket bound at a path of ours that keeps receiving. node-unix-socket 0.2.7, once a send has
// to wait (the receiver's queue is full), spins a core until it is sent and never receives again: such a send is
// dropped at once and the socket that sent it closed (measured: 1.4 s of CPU in 1.5 s of waiting, no datagram after).
import { chmodSync, linkSync, unlinkSync } from 'node:fs';
import type { UnixDatagramSocket } from './unixgramModule.ts';

/** Why `send` dropped a datagram the receiver had no room for (its queue holds net.unix.max_dgram_qlen, 10 by default). */
export const RECEIVER_FULL = "the receiver's queue is full";

export interface BoundDatagramSocket {
  /** Sends one datagram; `done`, before `send` returns, with the reason it was dropped (RECEIVER_FULL, the path gone), if it was. */
  send(payload: Buffer, to: string, done: (dropped: string | undefined) => void): void;
  /** Datagrams with the path they came from ('' for a sender bound nowhere). */
  onDatagram(receive: (payload: Buffer, from: string) => void): void;
  /** The socket failed and could not be bound again: nothing more will come. */
  onFailure(failed: (reason: string) => void): void;
  /** Stops delivering datagrams (the socket stays bound, for what is still sent from it). */
  stopReceiving(): void;
  /** Closes the socket and removes its path. */
  close(): void;
}

export interface BindOptions {
  create(): UnixDatagramSocket;
  path: string;
  /** The socket file's mode: who may send to it. */
  mode: number;
  bufferBytes: number;
}

/** Binds a fresh socket at the path (removing what is there: the path is ours) and sets its mode and buffers. */
function bindAt(o: BindOptions): UnixDatagramSocket {
  remove(o.path);
  const socket = o.create();
  try {
    socket.bind(o.path);
    chmodSync(o.path, o.mode);
    socket.setRecvBufferSize(o.bufferBytes);
    socket.setSendBufferSize(o.bufferBytes);
  } catch (err) {
    socket.close();
    throw err;
  }
  return socket;
}

/** Removes a path of ours, if it is there. */
function remove(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

/** Sends one datagram on `socket`: whether the kernel took it at once (the addon then calls back before sendTo returns). */
function sendNow(socket: UnixDatagramSocket, payload: Buffer, to: string, done: (dropped: string | undefined) => void): boolean {
  let answered = false;
  try {
    socket.sendTo(payload, 0, payload.length, to, (err) => {
      if (answered) return;
      answered = true;
      done(err?.message);
    });
  } catch (err) {
    answered = true;
    done((err as Error).message);
  }
  if (answered) return true;
  answered = true;
  done(RECEIVER_FULL);
  return false;
}

/** Where received datagrams and a failure go: the listeners a BoundDatagramSocket's user sets. */
function delivery() {
  let receive: ((payload: Buffer, from: string) => void) | undefined;
  let failed: (reason: string) => void = () => undefined;
  return {
    deliver: (payload: Buffer, from: string) => receive?.(payload, from),
    fail: (reason: string) => failed(reason),
    listeners: {
      onDatagram: (r: (payload: Buffer, from: string) => void) => void (receive = r),
      onFailure: (f: (reason: string) => void) => void (failed = f),
      stopReceiving: () => void (receive = undefined),
    },
  };
}

/** Addresses of closed senders kept leading to the receiver (what the service still answers to). */
const KEPT_ADDRESSES = 16;

/**
 * A socket that receives and never sends, so nothing can stop it receiving; datagrams leave through a sender
 * socket whose address names the receiver: bound at a fresh path, which is then made a hard link to the
 * receiver's socket, so answers to the sender reach the receiver. A sender that had to wait is closed, and the
 * next datagram gets a new one (its address changes; what the service answers still reaches the flow).
 */
export function bindReceiverWithSenders(o: BindOptions): BoundDatagramSocket {
  const receiver = bindAt(o);
  let open = true;
  const to = delivery();
  let sender: { socket: UnixDatagramSocket; path: string } | undefined;
  let senders = 0;
  receiver.on('data', to.deliver);
  receiver.on('error', (err) => {
    if (open) to.fail(`socket error: ${err.message}`);
  });
  // A closed sender's address still leads to the receiver for a while: the service may not have answered yet.
  const oldAddresses: string[] = [];
  const dropSender = () => {
    if (!sender) return;
    sender.socket.close();
    oldAddresses.push(sender.path);
    if (oldAddresses.length > KEPT_ADDRESSES) remove(oldAddresses.shift() as string);
    sender = undefined;
  };
  const newSender = () => {
    const path = `${o.path}${++senders}`;
    const socket = o.create();
    try {
      socket.bind(path);
      remove(path);
      linkSync(o.path, path);
    } catch (err) {
      socket.close();
      remove(path);
      throw err;
    }
    socket.on('error', () => dropSender());
    return { socket, path };
  };
  return {
    ...to.listeners,
    send(payload, target, done) {
      if (!open) return done('socket closed');
      try {
        sender ??= newSender();
      } catch (err) {
        return done(`cannot bind a sender: ${(err as Error).message}`);
      }
      if (!sendNow(sender.socket, payload, target, done)) dropSender();
    },
    close() {
      if (!open) return;
      open = false;
      dropSender();
      for (const path of oldAddresses) remove(path);
      receiver.close();
      remove(o.path);
    },
  };
}

/** One socket that receives and sends (its answers come from its own path); bound anew after a send that had to wait. */
export function bindDatagramSocket(o: BindOptions): BoundDatagramSocket {
  let socket = bindAt(o);
  let open = true;
  const to = delivery();
  const listen = (s: UnixDatagramSocket) => {
    s.on('data', to.deliver);
    // The addon closes the socket on a receive error.
    s.on('error', (err) => fail(`socket error: ${err.message}`));
  };
  const fail = (reason: string) => {
    if (!open) return;
    open = false;
    to.fail(reason);
  };
  // The old socket's queued send is dropped with it; what the receiver sends meanwhile reaches the new one (same path).
  const rebind = () => {
    const old = socket;
    old.removeAllListeners('data');
    old.close();
    try {
      socket = bindAt(o);
      listen(socket);
    } catch (err) {
      fail(`cannot bind ${o.path} again: ${(err as Error).message}`);
    }
  };
  listen(socket);
  return {
    ...to.listeners,
    send(payload, target, done) {
      if (!open) return done('socket closed');
      if (!sendNow(socket, payload, target, done)) rebind();
    },
    close() {
      if (!open) return;
      open = false;
      socket.close();
      remove(o.path);
    },
  };
}
