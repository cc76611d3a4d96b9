// The CONNECT transport: an mTLS connection to the gateway, `CONNECT <route>:443` with the token in
// Proxy-Authorization, and after `200` the TLS socket itself is the tunnel (end() = FIN = half-close).
import type { GatewayEndpoint } from './gatewayEndpoint.ts';
import { requestOverTls } from './gatewayRequest.ts';
import type { OpenResult } from './tunnelFailure.ts';

/** Opens one tunnel to `route` by CONNECT. Resolves once bytes can flow, or with why they cannot. */
export async function openConnectTunnel(endpoint: GatewayEndpoint, route: string, timeoutMs = 20_000): Promise<OpenResult> {
  const authority = `${route}:443`;
  const answer = await requestOverTls(endpoint, {
    lines: (e) => [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`, `Proxy-Authorization: Bearer ${e.token}`, 'User-Agent: gatehouse-tunnel'],
    success: 200,
    allowHalfOpen: true,
    timeoutMs,
  });
  if (!answer.ok) return answer;
  answer.socket.setTimeout(0);
  return { ok: true, stream: answer.socket };
}
