// One publisher connection: mTLS to the gateway, `GET /.well-known/gatehouse/publish` with the token and
// the service names, and after `101` an HTTP/2 server session on that same connection (the gateway is the client).
import { performServerHandshake, type ServerHttp2Session } from 'node:http2';
import { connect, type TLSSocket } from 'node:tls';
import { parseHead, type ResponseHead } from './connectTransport.ts';
import { tlsOptions, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { classifyError, refusalReason, type TunnelFailure } from './tunnelFailure.ts';
import { PUBLISH_PATH, PUBLISH_PROTOCOL, PUBLISHER_HEADER, SERVICES_HEADER, USER_HEADER } from '../upstream/publishProtocol.ts';

export type Registration =
  | { ok: true; session: ServerHttp2Session; socket: TLSSocket; user: string; publisherId: string }
  | { ok: false; failure: TunnelFailure };

const MAX_HEAD = 16 * 1024;
const MAX_ERROR_BODY = 64 * 1024;
/** Per-stream receive window (towards the local service): what a slow local service may leave unread. */
export const STREAM_WINDOW = 256 << 10;
const CONNECTION_WINDOW = 16 << 20;

function headerValue(head: string, name: string): string {
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name}:`));
  return line ? line.slice(name.length + 1).trim() : '';
}

/** Registers `services` and resolves once the gateway has said 101 and HTTP/2 runs, or with why not. */
export function registerPublisher(endpoint: GatewayEndpoint, services: readonly string[], timeoutMs = 20_000): Promise<Registration> {
  return new Promise((resolve) => {
    const socket = connect(tlsOptions(endpoint));
    let settled = false;
    let received = Buffer.alloc(0);
    let refusal: ResponseHead | undefined;
    const finish = (result: Registration) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (!result.ok) socket.destroy();
      resolve(result);
    };
    const refused = (h: ResponseHead, body: Buffer) => finish({ ok: false, failure: { kind: 'refused', status: h.status, reason: refusalReason(body.toString('utf8'), h.statusText) } });
    const onData = (chunk: Buffer) => {
      if (refusal) {
        refusal.rest = Buffer.concat([refusal.rest, chunk]);
        if (refusal.rest.length >= (refusal.contentLength ?? MAX_ERROR_BODY)) refused(refusal, refusal.rest);
        return;
      }
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) {
        if (received.length > MAX_HEAD) finish({ ok: false, failure: { kind: 'protocol', detail: 'response header too large' } });
        return;
      }
      const headText = received.subarray(0, end).toString('latin1');
      const head = parseHead(headText, received.subarray(end + 4));
      if (!head) return finish({ ok: false, failure: { kind: 'protocol', detail: `not an HTTP response: ${JSON.stringify(received.subarray(0, 40).toString('latin1'))}` } });
      if (head.status !== 101) {
        refusal = head;
        if (head.rest.length >= (head.contentLength ?? MAX_ERROR_BODY) || head.contentLength === 0) refused(head, head.rest);
        return;
      }
      socket.off('data', onData);
      socket.pause();
      // The gateway's HTTP/2 preface may have come with the 101: HTTP/2 reads it from the socket's buffer.
      if (head.rest.length > 0) socket.unshift(head.rest);
      const session = performServerHandshake(socket, { settings: { initialWindowSize: STREAM_WINDOW, enablePush: false }, maxSessionMemory: 64 });
      // The connection-level window (64 KiB by default) would cap every stream together; the stream windows bound each.
      session.once('localSettings', () => session.setLocalWindowSize(CONNECTION_WINDOW));
      finish({ ok: true, session, socket, user: headerValue(headText, USER_HEADER), publisherId: headerValue(headText, PUBLISHER_HEADER) });
    };
    const onEnd = () => {
      if (refusal) return refused(refusal, refusal.rest);
      finish({ ok: false, failure: { kind: 'network', code: 'CLOSED', detail: 'connection closed before a response' } });
    };
    const onError = (err: Error) => finish({ ok: false, failure: classifyError(err) });
    const timer = setTimeout(() => finish({ ok: false, failure: { kind: 'network', code: 'TIMEOUT', detail: `no answer within ${timeoutMs} ms` } }), timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.once('secureConnect', () => {
      const lines = [
        `GET ${PUBLISH_PATH} HTTP/1.1`,
        `Host: ${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`,
        'Connection: Upgrade',
        `Upgrade: ${PUBLISH_PROTOCOL}`,
        `Authorization: Bearer ${endpoint.token}`,
        `${SERVICES_HEADER}: ${services.join(', ')}`,
        'User-Agent: gatehouse-publish',
      ];
      socket.write(lines.join('\r\n') + '\r\n\r\n');
    });
  });
}
