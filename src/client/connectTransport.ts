// The CONNECT transport: an mTLS connection to the gateway, `CONNECT <route>:443` with the token in
// Proxy-Authorization, and after `200` the TLS socket itself is the tunnel (end() = FIN = half-close).
import { bearerOf, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { requestOverTls } from './gatewayRequest.ts';
import type { OpenResult } from './tunnelFailure.ts';
import type { TunnelReads } from './tunnelReads.ts';

const RELAY_HIGH_WATER_MARK = 256 * 1024;

/**
 * Opens one tunnel to `route` by CONNECT. Resolves once bytes can flow, or with why they cannot. With
 * `reads` the tunnel is read into reused memory (for a relay that writes each chunk on at once).
 */
export async function openConnectTunnel(endpoint: GatewayEndpoint, route: string, options: { reads?: TunnelReads; timeoutMs?: number } = {}): Promise<OpenResult> {
  const authority = `${route}:443`;
  const answer = await requestOverTls(endpoint, {
    lines: (e) => [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`, `Proxy-Authorization: Bearer ${bearerOf(e)}`, 'User-Agent: gatehouse-tunnel'],
    success: 200,
    allowHalfOpen: true,
    timeoutMs: options.timeoutMs ?? 20_000,
    // A relayed tunnel takes 64 KiB reads of the local socket: room for several of them before
    // write() asks the local side to pause, so bulk data does not stop and start reading at every chunk.
    ...(options.reads && { reads: options.reads, highWaterMark: RELAY_HIGH_WATER_MARK }),
  });
  if (!answer.ok) return answer;
  answer.socket.setTimeout(0);
  return { ok: true, stream: answer.socket, ...(options.reads && { reads: { from: options.reads, early: answer.early } }) };
}
