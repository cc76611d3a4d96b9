// The WebSocket transport, for networks that pass only HTTP(S): an mTLS upgrade to
// /.well-known/gatehouse/tunnel/<route> (or udp/<route>) with the transport's subprotocol and the token as Bearer.
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { bearerOf, tlsOptions, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { TUNNEL_PATH, TUNNEL_SUBPROTOCOL, TunnelStream, type TunnelStreamOptions } from '../tunnel/tunnelProtocol.ts';
import { classifyError, refusalReason, type OpenResult, type TunnelFailure } from './tunnelFailure.ts';

/** The client opened the WebSocket, so it ends it, and reports how it ended to the user (see TunnelStreamOptions). */
const CLIENT_SIDE: TunnelStreamOptions = { closeAfterBothEof: true, peerCloseIsEnd: true, sendErrorDestroys: true, readableHighWaterMark: 1 << 20, writableHighWaterMark: 256 << 10 };

// Client frames must be masked (RFC 6455). Masking protects HTTP intermediaries that read frames in
// clear text from hostile browser scripts; inside our end-to-end mTLS connection there are none, so an
// all-zero mask key (which ws recognizes and skips XORing) saves a full pass over every byte.
const zeroMask = (mask: Buffer) => {
  mask.fill(0);
};

function readBody(res: IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (body.length < limit) body += chunk;
    });
    res.on('end', () => resolve(body));
    res.on('error', () => resolve(body));
    res.on('close', () => resolve(body));
  });
}

export function openWebSocketTunnel(endpoint: GatewayEndpoint, route: string, timeoutMs = 20_000): Promise<OpenResult> {
  return openGatewayWebSocket(endpoint, `${TUNNEL_PATH}${encodeURIComponent(route)}`, TUNNEL_SUBPROTOCOL, 64 << 20, timeoutMs).then((opened) => (opened.ok ? { ok: true, stream: new TunnelStream(opened.ws, CLIENT_SIDE) } : opened));
}

/** An mTLS WebSocket to `path` on the gateway speaking `subprotocol`, or why it could not be opened (a refusal with its reason). */
export function openGatewayWebSocket(endpoint: GatewayEndpoint, path: string, subprotocol: string, maxPayload: number, timeoutMs = 20_000): Promise<{ ok: true; ws: WebSocket } | { ok: false; failure: TunnelFailure }> {
  return new Promise((resolve) => {
    const tls = tlsOptions(endpoint);
    const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
    const ws = new WebSocket(`wss://${host}:${endpoint.port}${path}`, subprotocol, {
      cert: tls.cert,
      key: tls.key,
      ...(tls.ca && { ca: tls.ca }),
      ...(tls.servername && { servername: tls.servername }),
      rejectUnauthorized: true,
      headers: { authorization: `Bearer ${bearerOf(endpoint)}`, 'user-agent': 'gatehouse-tunnel' },
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      maxPayload,
      skipUTF8Validation: true,
      generateMask: zeroMask,
    });
    let settled = false;
    const finish = (result: { ok: true; ws: WebSocket } | { ok: false; failure: TunnelFailure }) => {
      if (settled) return;
      settled = true;
      ws.off('error', onError);
      // A refused or failed socket may still report errors while it is torn down.
      if (!result.ok) ws.on('error', () => {});
      resolve(result);
    };
    const onError = (err: Error) => {
      finish({ ok: false, failure: /timed out/i.test(err.message) ? { kind: 'network', code: 'TIMEOUT', detail: err.message } : classifyError(err) });
      ws.terminate();
    };
    ws.on('error', onError);
    ws.once('unexpected-response', (req, res) => {
      void readBody(res).then((body) => {
        finish({ ok: false, failure: { kind: 'refused', status: res.statusCode ?? 0, reason: refusalReason(body, res.statusMessage ?? '') } });
        req.destroy();
        ws.terminate();
      });
    });
    ws.once('open', () => {
      if (ws.protocol !== subprotocol) {
        finish({ ok: false, failure: { kind: 'protocol', detail: `the gateway did not accept subprotocol ${subprotocol}` } });
        ws.terminate();
        return;
      }
      finish({ ok: true, ws });
    });
  });
}
