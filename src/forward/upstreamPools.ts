// Keep-alive connections to the upstreams the HTTP forwarder reaches by address: one bounded pool per UNIX
// socket path or host:port, of undici Clients lent one exchange at a time; closed once idle, on reload, on shutdown.
import { Client, type Dispatcher } from 'undici';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Where the pool's connections go: a UNIX socket or host:port the gateway dials itself, or streams opened
 * over a publisher's connection (one published service's replica), each stream one keep-alive connection.
 */
export type PoolAddress = { socketPath: string; host: string } | { host: string; port: number } | StreamAddress;

export interface StreamAddress {
  /** Names the replica: its streams are interchangeable, another replica's are not (the policy pinned it). */
  key: string;
  open(): Promise<Duplex | Error>;
  /** Its connection serves one exchange and closes (a stream relayed between instances carries one identity). */
  once?: true;
}

/**
 * Connections per upstream. A bound on descriptors, set high because a pool queues what exceeds it:
 * an application with long-polling or event-stream responses must not starve its other requests.
 */
const CONNECTIONS_PER_UPSTREAM = 256;
/** How long an upstream may take to send a response head, then between body chunks (as before: 120 s). */
const UPSTREAM_TIMEOUT_MS = 120_000;
/** Idle keep-alive connections close after this (less when the upstream announces a shorter Keep-Alive). */
const KEEP_ALIVE_MS = 4_000;
/** A pool nobody used for this long is closed (routes with `{param}` upstreams name many sockets). */
const POOL_IDLE_MS = 60_000;

/** Options every dispatcher to an upstream shares: one request at a time per connection (no pipelining). */
const COMMON = {
  pipelining: 1,
  headersTimeout: UPSTREAM_TIMEOUT_MS,
  bodyTimeout: UPSTREAM_TIMEOUT_MS,
  keepAliveTimeout: KEEP_ALIVE_MS,
  // Lengths are the gateway's own (re-derived from what it read), so a mismatch is a bug to refuse, not to warn of.
  strictContentLength: true,
} as const;

/**
 * One exchange's hold on a connection. `release` when undici is done with it (it may serve the next
 * request); `discard` to end it at once (the client left mid-exchange: the upstream request stops now).
 */
export interface Lease {
  dispatcher: Dispatcher;
  release(): void;
  discard(): void;
}

/**
 * One upstream's connections: undici Clients of one connection each, lent out one exchange at a time.
 * Not undici's Pool: aborting a request on a Pool connection makes it open a spare connection to the
 * upstream at once (it re-queues the aborted request until a socket exists); destroying the lent Client
 * ends exactly that connection and nothing else.
 */
class ConnectionPool {
  readonly #create: () => Client;
  readonly #all = new Set<Client>();
  /** Most recently released last: reused first, so the other keep-alive connections can time out. */
  readonly #idle: Client[] = [];
  readonly #waiting: Array<(lease: Lease | undefined) => void> = [];
  /** After shutdown nothing is lent or opened again. */
  #closed = false;
  /** Shutdown is draining: a connection is closed once its exchange is done, not kept for another. */
  #draining = false;
  lastUsed = performance.now();

  constructor(create: () => Client) {
    this.#create = create;
  }

  get inFlight(): number {
    return this.#all.size - this.#idle.length;
  }

  /**
   * A lease now when a connection is free or may be added; otherwise once one is released, or undefined
   * if the exchange is given up first (`whenGone` is handed the means to do so, on this path only).
   */
  acquire(whenGone?: GiveUp): Lease | Promise<Lease | undefined> {
    this.lastUsed = performance.now();
    const idle = this.#idle.pop();
    if (idle) return this.#lease(idle);
    if (this.#all.size < CONNECTIONS_PER_UPSTREAM) return this.#lease(this.#added());
    return new Promise((resolve) => {
      const waiter = (lease: Lease | undefined) => resolve(lease);
      this.#waiting.push(waiter);
      // A client that left must not keep its place: while the upstream's connections stay busy (an
      // upstream that never answers holds them up to UPSTREAM_TIMEOUT_MS), clients that come and go would
      // otherwise grow the line, each entry holding its request, without bound.
      whenGone?.(() => {
        const at = this.#waiting.indexOf(waiter);
        if (at === -1) return;
        this.#waiting.splice(at, 1);
        resolve(undefined);
      });
    });
  }

  #added(): Client {
    const client = this.#create();
    this.#all.add(client);
    return client;
  }

  #lease(client: Client): Lease {
    let returned = false;
    return {
      dispatcher: client,
      release: () => {
        if (returned) return;
        returned = true;
        if (this.#closed) return void client.destroy().catch(() => {});
        const next = this.#waiting.shift();
        if (next) next(this.#lease(client));
        else if (this.#draining) this.#retire(client);
        else this.#idle.push(client);
      },
      discard: () => {
        if (returned) return;
        returned = true;
        this.#all.delete(client);
        void client.destroy().catch(() => {});
        if (this.#closed) return;
        const next = this.#waiting.shift();
        if (next) next(this.#lease(this.#added()));
      },
    };
  }

  #retire(client: Client): void {
    this.#all.delete(client);
    void client.close().catch(() => {});
  }

  /** Closes the idle connections now and each busy one once its exchange is done (a drain: what waits is still served). */
  drain(): void {
    this.#draining = true;
    for (const client of this.#idle.splice(0)) this.#retire(client);
  }

  /** Ends the line: every waiting exchange is given up (undefined), nothing new is lent. */
  #shut(): void {
    this.#closed = true;
    for (const waiter of this.#waiting.splice(0)) waiter(undefined);
  }

  close(): Promise<void> {
    this.#shut();
    this.#idle.length = 0;
    const closing = [...this.#all].map((client) => client.close().catch(() => {}));
    this.#all.clear();
    return Promise.all(closing).then(() => {});
  }

  destroy(): void {
    this.#shut();
    for (const client of this.#all) void client.destroy().catch(() => {});
    this.#all.clear();
    this.#idle.length = 0;
  }
}

/** Registers how a waiting exchange is given up: `cancel` takes it out of the line (the client left). */
export type GiveUp = (cancel: () => void) => void;

export interface UpstreamPools {
  /**
   * A connection to `address` for one exchange: a promise only while all its connections are lent,
   * resolving to undefined if `whenGone`'s cancel is called before one is free.
   */
  acquire(address: PoolAddress, whenGone?: GiveUp): Lease | Promise<Lease | undefined>;
  /** Closes every pool with nothing in flight (after a reload, so pools of removed routes go now). */
  closeIdle(): void;
  /**
   * Shutdown began: no connection is kept alive for a later exchange (idle ones close now), so that the
   * upstreams, and the publisher connections their streams run over, are let go as soon as their exchanges end.
   */
  drain(): void;
  /** Destroys every pool and its connections (shutdown). */
  close(): void;
}

function keyOf(address: PoolAddress): string {
  if ('open' in address) return `stream:${address.key}`;
  return 'socketPath' in address ? `unix:${address.socketPath}` : `tcp:${address.host}:${address.port}`;
}

function connectionsTo(address: PoolAddress): ConnectionPool {
  if ('open' in address) {
    const { open } = address;
    return new ConnectionPool(
      () =>
        new Client('http://localhost', {
          ...COMMON,
          // undici needs only the Duplex side of a socket (ref/unref and the rest are used when present).
          connect: (_options, callback) =>
            void open().then((stream) => {
              if (stream instanceof Error) return callback(stream, null);
              endInsteadOfReset(stream);
              callback(null, stream as Socket);
            }),
        }),
    );
  }
  if ('socketPath' in address) {
    const { socketPath } = address;
    return new ConnectionPool(() => new Client('http://localhost', { ...COMMON, socketPath }));
  }
  const origin = `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  return new ConnectionPool(() => new Client(origin, COMMON));
}

export function createUpstreamPools(): UpstreamPools {
  const pools = new Map<string, ConnectionPool>();
  let draining = false;
  const sweep = setInterval(() => {
    const before = performance.now() - POOL_IDLE_MS;
    for (const [key, pool] of pools) {
      if (pool.inFlight > 0 || pool.lastUsed > before) continue;
      pools.delete(key);
      void pool.close();
    }
  }, POOL_IDLE_MS / 2);
  sweep.unref();

  return {
    acquire(address, whenGone) {
      if ('open' in address && address.once) return oneExchange(connectionsTo(address));
      const key = keyOf(address);
      let pool = pools.get(key);
      if (!pool) {
        pool = connectionsTo(address);
        if (draining) pool.drain();
        pools.set(key, pool);
      }
      return pool.acquire(whenGone);
    },
    closeIdle() {
      for (const [key, pool] of pools) {
        if (pool.inFlight > 0) continue;
        pools.delete(key);
        void pool.close();
      }
    },
    drain() {
      draining = true;
      for (const pool of pools.values()) pool.drain();
    },
    close() {
      clearInterval(sweep);
      for (const pool of pools.values()) pool.destroy();
      pools.clear();
    },
  };
}

/** A pool of one connection for one exchange, closed once the exchange is done (never kept for another). */
function oneExchange(pool: ConnectionPool): Lease {
  const lease = pool.acquire() as Lease;
  return {
    dispatcher: lease.dispatcher,
    release: () => (lease.release(), void pool.close()),
    discard: () => (lease.discard(), pool.destroy()),
  };
}

/** How long a stream being ended may take to be ended by the other side before it is reset. */
const STREAM_FINISH_MS = 5_000;

/**
 * Makes `destroy()` of a stream end it instead: our END_STREAM, then the peer's once its service has
 * closed. undici destroys its socket to close an idle keep-alive connection, after a `Connection: close`
 * answer, and when the peer ends; a destroyed HTTP/2 stream not yet ended both ways is reset
 * (RST_STREAM), and the publisher's HTTP/2 stack drops the whole connection after ~1,000 resets.
 */
function endInsteadOfReset(stream: Duplex): void {
  const reset = stream.destroy.bind(stream);
  let ending = false;
  stream.destroy = (err?: Error) => {
    // Already closed both ways (Node's own cleanup lands here too): destroying sends nothing. An error
    // that is not undici's (a lost publisher) cuts the stream at once.
    const fromUndici = err === undefined || String((err as NodeJS.ErrnoException).code ?? '').startsWith('UND_ERR');
    if (!fromUndici || stream.closed || (stream.readableEnded && stream.writableFinished)) return reset(err);
    if (ending) return stream;
    ending = true;
    stream.resume(); // anything more the service sends is not wanted, and must not hold the stream open
    if (!stream.writableEnded) stream.end();
    const timer = setTimeout(() => reset(), STREAM_FINISH_MS);
    timer.unref();
    stream.once('close', () => clearTimeout(timer));
    return stream;
  };
}
