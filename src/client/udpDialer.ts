// Opens one UDP flow to a route through the gateway: RFC 9298 CONNECT-UDP over an mTLS HTTP/1.1 upgrade
// (`connect`) or an HTTP/2 extended CONNECT stream (`http2`), or the WebSocket transport (`websocket`).
import type { Transport } from './clientSettings.ts';
import type { GatewayEndpoint } from './gatewayEndpoint.ts';
import { requestOverTls } from './gatewayRequest.ts';
import type { TunnelFailure } from './tunnelFailure.ts';
import { udpEndpointPath } from '../routing/reservedPaths.ts';
import { CapsuleChannel, CONNECT_UDP, MAX_UDP_PAYLOAD, UDP_SUBPROTOCOL, WebSocketChannel, type DatagramChannel } from '../tunnel/udpChannel.ts';

export type FlowOpenResult = { ok: true; channel: DatagramChannel } | { ok: false; failure: TunnelFailure };

/** What may wait to be written to the gateway on one flow: past it, datagrams from the local peer are dropped. */
const QUEUE_BYTES = 256 * 1024;

export async function openUdpFlow(endpoint: GatewayEndpoint, transport: Transport, route: string, timeoutMs = 20_000): Promise<FlowOpenResult> {
  const path = udpEndpointPath(route);
  if (transport === 'websocket') {
    const { openGatewayWebSocket } = await import('./websocketTransport.ts');
    const opened = await openGatewayWebSocket(endpoint, path, UDP_SUBPROTOCOL, MAX_UDP_PAYLOAD, timeoutMs);
    return opened.ok ? { ok: true, channel: new WebSocketChannel(opened.ws, QUEUE_BYTES) } : opened;
  }
  if (transport === 'http2') {
    const { openUdpFlowOverH2 } = await import('./udpOverH2.ts');
    return openUdpFlowOverH2(endpoint, path, QUEUE_BYTES, timeoutMs);
  }
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  const answer = await requestOverTls(endpoint, {
    // RFC 9298 §3.2: GET with Upgrade: connect-udp; the capsule protocol on.
    lines: (e) => [`GET ${path} HTTP/1.1`, `Host: ${host}:${e.port}`, 'Connection: Upgrade', `Upgrade: ${CONNECT_UDP}`, 'Capsule-Protocol: ?1', `Authorization: Bearer ${e.token}`, 'User-Agent: gatehouse-tunnel'],
    success: 101,
    timeoutMs,
  });
  if (!answer.ok) return answer;
  answer.socket.setTimeout(0);
  return { ok: true, channel: new CapsuleChannel(answer.socket, QUEUE_BYTES) };
}
