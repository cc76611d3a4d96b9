// The CONNECT transport: an mTLS connection to the gateway, `CONNECT <route>:443` with the token in
// Proxy-Authorization, and after `200` the TLS socket itself is the tunnel (end() = FIN = half-close).
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { classifyError, refusalReason, type OpenResult } from './tunnelFailure.ts';
import { tlsOptions, type GatewayEndpoint } from './gatewayEndpoint.ts';

const MAX_HEAD = 16 * 1024;
const MAX_ERROR_BODY = 64 * 1024;

export interface ResponseHead {
  status: number;
  statusText: string;
  contentLength: number | undefined;
  /** Bytes after the blank line: tunnel bytes on 200, body bytes otherwise. */
  rest: Buffer;
}

export function parseHead(head: string, rest: Buffer): ResponseHead | undefined {
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const lengthLine = lines.find((l) => /^content-length:/i.test(l));
  const length = lengthLine ? Number(lengthLine.slice(lengthLine.indexOf(':') + 1).trim()) : undefined;
  return { status: Number(m[1]), statusText: m[2] ?? '', contentLength: Number.isFinite(length) ? length : undefined, rest };
}

/** Opens one tunnel to `route` by CONNECT. Resolves once bytes can flow, or with why they cannot. */
export function openConnectTunnel(endpoint: GatewayEndpoint, route: string, timeoutMs = 20_000): Promise<OpenResult> {
  return new Promise((resolve) => {
    // allowHalfOpen (honoured by tls.connect, missing from its types): the gateway's FIN must not end our side.
    const socket: TLSSocket = connect({ ...tlsOptions(endpoint), allowHalfOpen: true } as ConnectionOptions);
    let settled = false;
    let received = Buffer.alloc(0);
    let head: ResponseHead | undefined;

    const finish = (result: OpenResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      if (!result.ok) socket.destroy();
      resolve(result);
    };
    const refusedWithBody = (h: ResponseHead, body: Buffer) =>
      finish({ ok: false, failure: { kind: 'refused', status: h.status, reason: refusalReason(body.toString('utf8'), h.statusText) } });

    const onData = (chunk: Buffer) => {
      if (head) {
        // Reading an error body.
        head.rest = Buffer.concat([head.rest, chunk]);
        if (head.rest.length >= (head.contentLength ?? MAX_ERROR_BODY)) refusedWithBody(head, head.rest.subarray(0, head.contentLength ?? MAX_ERROR_BODY));
        return;
      }
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) {
        if (received.length > MAX_HEAD) finish({ ok: false, failure: { kind: 'protocol', detail: 'response header too large' } });
        return;
      }
      const parsed = parseHead(received.subarray(0, end).toString('latin1'), received.subarray(end + 4));
      if (!parsed) return finish({ ok: false, failure: { kind: 'protocol', detail: `not an HTTP response: ${JSON.stringify(received.subarray(0, 40).toString('latin1'))}` } });
      if (parsed.status === 200) {
        socket.pause();
        if (parsed.rest.length > 0) socket.unshift(parsed.rest);
        socket.setTimeout(0);
        return finish({ ok: true, stream: socket });
      }
      head = parsed;
      if (head.rest.length >= (head.contentLength ?? MAX_ERROR_BODY) || head.contentLength === 0) refusedWithBody(head, head.rest.subarray(0, head.contentLength ?? MAX_ERROR_BODY));
    };
    const onEnd = () => {
      if (head) return refusedWithBody(head, head.rest);
      finish({ ok: false, failure: { kind: 'network', code: 'CLOSED', detail: 'connection closed before a response' } });
    };
    const onError = (err: Error) => finish({ ok: false, failure: classifyError(err) });
    const timer = setTimeout(() => finish({ ok: false, failure: { kind: 'network', code: 'TIMEOUT', detail: `no answer within ${timeoutMs} ms` } }), timeoutMs);

    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.once('secureConnect', () => {
      const authority = `${route}:443`;
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Bearer ${endpoint.token}\r\nUser-Agent: gatehouse-tunnel\r\n\r\n`);
    });
  });
}
