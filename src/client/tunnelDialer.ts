// Opens tunnels to the gateway over the chosen transport, and checks once at startup, with a TLS
// handshake alone, that the gateway is reachable and accepts our certificate.
import { connect } from 'node:tls';
import type { Transport } from './clientSettings.ts';
import { openConnectTunnel } from './connectTransport.ts';
import { TunnelReads } from './tunnelReads.ts';
import { tlsOptions, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { classifyError, type OpenResult, type TunnelFailure } from './tunnelFailure.ts';

/** `relay`: the caller splices the tunnel with a socket (see TunnelReads); a CONNECT tunnel then reads into reused memory. */
export async function openTunnel(endpoint: GatewayEndpoint, transport: Transport, route: string, use: 'relay' | 'stream' = 'stream'): Promise<OpenResult> {
  if (transport !== 'websocket') return openConnectTunnel(endpoint, route, use === 'relay' ? { reads: new TunnelReads() } : {});
  // Loaded on first use: ws costs the CONNECT client (the default) ~15 MiB it never needs.
  const { openWebSocketTunnel } = await import('./websocketTransport.ts');
  return openWebSocketTunnel(endpoint, route);
}

/**
 * Connects, completes the TLS handshake and closes, so a wrong CA, a rejected certificate or a closed
 * port is reported before any listener says "ready". No HTTP request is sent, so nothing is audited
 * beyond the connection. A gateway that does not accept our certificate completes the handshake and
 * then drops the connection (TLS 1.3: the client finishes first), so the check waits a few round
 * trips for that before it closes politely.
 */
export function preflight(endpoint: GatewayEndpoint, timeoutMs = 15_000): Promise<{ ok: true } | { ok: false; failure: TunnelFailure }> {
  return new Promise((resolve) => {
    const started = performance.now();
    let roundTrip = 0;
    let handshakeDone = false;
    const socket = connect(tlsOptions(endpoint));
    let done = false;
    const finish = (result: { ok: true } | { ok: false; failure: TunnelFailure }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (result.ok) socket.end();
      else socket.destroy();
      resolve(result);
    };
    const dropped = () =>
      finish(
        handshakeDone
          ? { ok: false, failure: { kind: 'tls', code: 'CLIENT_CERT_REJECTED', detail: 'the gateway closed the connection right after the TLS handshake' } }
          : { ok: false, failure: { kind: 'network', code: 'CLOSED', detail: 'connection closed during the TLS handshake' } },
      );
    const timer = setTimeout(() => finish({ ok: false, failure: { kind: 'network', code: 'TIMEOUT', detail: `no TLS handshake within ${timeoutMs} ms` } }), timeoutMs);
    socket.on('error', (err) => (handshakeDone && /ECONNRESET|EPIPE/.test((err as NodeJS.ErrnoException).code ?? '') ? dropped() : finish({ ok: false, failure: classifyError(err) })));
    socket.once('connect', () => (roundTrip = performance.now() - started));
    socket.once('end', dropped);
    socket.once('close', dropped);
    socket.once('secureConnect', () => {
      handshakeDone = true;
      socket.resume();
      setTimeout(() => finish({ ok: true }), Math.max(250, 4 * roundTrip));
    });
  });
}
