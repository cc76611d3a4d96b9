// The publisher's side of each user stream: the gateway opens an HTTP/2 CONNECT stream naming a service;
// the publisher connects to that service's target (the one the user named, nothing else) and carries bytes.
import { constants as h2, type ServerHttp2Session, type ServerHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { carryBytes } from '../tunnel/carryBytes.ts';
import { DATAGRAMS_HEADER, STREAM_ERROR_HEADER } from '../upstream/publishProtocol.ts';
import { carryDatagrams, openLocalDatagrams } from './publishDatagrams.ts';
import type { PublishSpec } from './publishSpec.ts';

const LOCAL_CONNECT_TIMEOUT_MS = 10_000;

export interface StreamObserver {
  opened?(service: string): void;
  closed?(service: string, summary: string): void;
  refused?(service: string, reason: string): void;
}

function refuse(stream: ServerHttp2Stream, status: number, reason: string): void {
  if (stream.destroyed || stream.headersSent) return void stream.destroy();
  stream.respond({ [h2.HTTP2_HEADER_STATUS]: status, [STREAM_ERROR_HEADER]: reason.replace(/[^\x20-\x7e]/g, '?') }, { endStream: true });
}

function openLocal(target: Exclude<PublishSpec['target'], { kind: 'udp' }>): Socket {
  return target.kind === 'unix' ? connect({ path: target.path, allowHalfOpen: true }) : connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
}

/** A datagram stream (one UDP flow) to a UDP service: its own socket to the service, then capsules both ways. */
function serveFlow(stream: ServerHttp2Stream, service: string, target: { host: string; port: number }, observer: StreamObserver): void {
  void openLocalDatagrams(target, LOCAL_CONNECT_TIMEOUT_MS).then((local) => {
    if (!local.ok) {
      observer.refused?.(service, `${service}: ${local.reason}`);
      return refuse(stream, 502, `${service}: ${local.reason}`);
    }
    if (stream.destroyed || stream.closed) return void local.socket.close();
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200 });
    observer.opened?.(service);
    carryDatagrams(stream, local.socket, (summary) => observer.closed?.(service, summary));
  });
}

/**
 * Bytes both ways by the byte carrier, with the publisher's choices: the gateway's stream, when cut, is
 * cancelled (RST_STREAM); a stream reset with an error code cuts the service even after its end; a slow
 * service is waited for. The summary keeps the publisher's own words for how it ended.
 */
function carry(stream: ServerHttp2Stream, local: Socket, done: (reason: string) => void): void {
  let reason: string | undefined;
  local.on('error', (err: NodeJS.ErrnoException) => void (reason ??= `service error: ${err.code ?? err.message}`));
  // The gateway's stream was cut (the connection lost, the user gone): the service must see the cut as
  // one (a reset where TCP has one), not as a clean end of what it was sent.
  stream.on('error', (err: NodeJS.ErrnoException) => void (reason ??= `stream error: ${err.code ?? err.message}`));
  // A reset (the user left) must stop the local side at once: with writes still queued behind flow control,
  // Node would otherwise keep the stream half-alive while the service is read into the void.
  stream.once('aborted', () => {
    reason ??= 'gateway reset the stream';
    stream.destroy();
  });
  const resetWithError = (): boolean => stream.rstCode !== undefined && stream.rstCode !== h2.NGHTTP2_NO_ERROR;
  stream.once('close', () => {
    if (resetWithError()) reason ??= `gateway reset the stream (${stream.rstCode})`;
  });
  const carried = carryBytes({
    client: stream,
    upstream: local,
    lingerMs: 0,
    // destroy(err) resets the stream (INTERNAL_ERROR) without END_STREAM; close(code) would first send
    // END_STREAM, which the gateway reads as the service's clean end before the reset arrives.
    cut: { client: (_stream, err) => void (stream.destroyed || stream.destroy(err ?? new Error('the service connection was cut'))) },
    cleanClose: { client: () => !resetWithError() },
  });
  void carried.done.then(({ bytesIn, bytesOut }) => done(`${reason ?? 'closed'}; ${bytesIn} bytes in, ${bytesOut} out`));
}

/** Serves the gateway's streams on `session` to the targets of `specs` (by service name). */
export function serveStreams(session: ServerHttp2Session, specs: readonly PublishSpec[], observer: StreamObserver = {}): void {
  const byService = new Map(specs.map((s) => [s.service, s]));
  session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {});
    const service = String(headers[h2.HTTP2_HEADER_AUTHORITY] ?? '');
    if (headers[h2.HTTP2_HEADER_METHOD] !== 'CONNECT') return refuse(stream, 405, 'expected CONNECT');
    const spec = byService.get(service);
    // The gateway names a service; the target is only ever the one this user gave for it.
    if (!spec) {
      observer.refused?.(service, 'not published here');
      return refuse(stream, 404, `${service} is not published by this publisher`);
    }
    // A UDP service takes datagram streams only, any other service byte streams only: the gateway checks it too.
    const datagrams = headers[DATAGRAMS_HEADER] === '?1';
    if (datagrams !== (spec.target.kind === 'udp')) {
      const why = datagrams ? `${service} is not a UDP service` : `${service} is a UDP service; only datagram streams reach it`;
      observer.refused?.(service, why);
      return refuse(stream, 400, why);
    }
    if (spec.target.kind === 'udp') return serveFlow(stream, service, spec.target, observer);
    const local = openLocal(spec.target);
    const timer = setTimeout(() => local.destroy(new Error(`no connection within ${LOCAL_CONNECT_TIMEOUT_MS} ms`)), LOCAL_CONNECT_TIMEOUT_MS);
    const onError = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = `${service}: ${err.code ?? err.message}`;
      observer.refused?.(service, why);
      refuse(stream, 502, why);
    };
    local.once('error', onError);
    stream.once('close', () => {
      if (local.connecting) local.destroy();
    });
    local.once('connect', () => {
      clearTimeout(timer);
      local.off('error', onError);
      if (stream.destroyed) return void local.destroy();
      stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200 });
      observer.opened?.(service);
      carry(stream, local, (summary) => observer.closed?.(service, summary));
    });
  });
}
