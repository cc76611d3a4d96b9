// One publisher connection: mTLS to the gateway, `GET /.well-known/gatehouse/publish` with the token and
// the service names, and after `101` an HTTP/2 server session on that same connection (the gateway is the client).
import { performServerHandshake, type ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { bearerOf, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { headerValue, requestOverTls } from './gatewayRequest.ts';
import type { TunnelFailure } from './tunnelFailure.ts';
import { PUBLISH_PATH } from '../routing/reservedPaths.ts';
import { INSTANCE_HEADER, NOT_PUBLISHED_HEADER, PUBLISH_PROTOCOL, PUBLISHER_HEADER, PUBLISHER_ID_HEADER, RAW_TCP_HEADER, SERVICES_HEADER, UDP_HEADER, USER_HEADER } from '../upstream/publishProtocol.ts';
import { DEFAULT_MAX_STREAM_WINDOW } from '../config/publishWindowBounds.ts';
import { PUBLISH_SESSION_SETTINGS, sizeWindowsToPath, type PathWindows } from '../upstream/publishWindows.ts';

export type Registration =
  /** `notPublished`: the services the gateway did not publish, each with why ('' when it published all). */
  /** `instance`: the gateway instance's name in a cluster ('' for a single gateway). */
  | { ok: true; session: ServerHttp2Session; socket: TLSSocket; user: string; publisherId: string; notPublished: string; instance: string; windows: PathWindows }
  | { ok: false; failure: TunnelFailure };

/**
 * Registers `services` (`rawTcp` of them speak raw TCP, `udp` are UDP services) and resolves once the gateway has said 101 and HTTP/2 runs, or with why not.
 * `identity`: the publisher-id header's value (the process's id, and the connection this one replaces).
 */
export async function registerPublisher(endpoint: GatewayEndpoint, services: readonly string[], { timeoutMs = 20_000, rawTcp = [], udp = [], identity }: { timeoutMs?: number; rawTcp?: readonly string[]; udp?: readonly string[]; identity?: string } = {}): Promise<Registration> {
  const answer = await requestOverTls(endpoint, {
    lines: (e) => [
      `GET ${PUBLISH_PATH} HTTP/1.1`,
      `Host: ${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`,
      'Connection: Upgrade',
      `Upgrade: ${PUBLISH_PROTOCOL}`,
      `Authorization: Bearer ${bearerOf(e)}`,
      `${SERVICES_HEADER}: ${services.join(', ')}`,
      ...(rawTcp.length > 0 ? [`${RAW_TCP_HEADER}: ${rawTcp.join(', ')}`] : []),
      ...(identity !== undefined ? [`${PUBLISHER_ID_HEADER}: ${identity}`] : []),
      ...(udp.length > 0 ? [`${UDP_HEADER}: ${udp.join(', ')}`] : []),
      'User-Agent: gatehouse-publish',
    ],
    success: 101,
    timeoutMs,
  });
  if (!answer.ok) return answer;
  const { socket, headText } = answer;
  // The gateway's HTTP/2 preface may have come with the 101: it is back in the socket's buffer for HTTP/2.
  const session = performServerHandshake(socket, { settings: PUBLISH_SESSION_SETTINGS, maxSessionMemory: 64 });
  let streamsOpen = 0;
  session.on('stream', (stream) => {
    streamsOpen += 1;
    stream.once('close', () => (streamsOpen -= 1));
  });
  // Uploads (gateway to service) are received here: their windows grow to the path, at most `receiveWindow` each,
  // which is what a local service that stops reading may leave unread in this process.
  const sizing = { maxStreamWindow: endpoint.receiveWindow ?? DEFAULT_MAX_STREAM_WINDOW, streamsOpen: () => streamsOpen };
  const windows = sizeWindowsToPath(session, sizing, 'localSettings');
  return { ok: true, session, socket, user: headerValue(headText, USER_HEADER), publisherId: headerValue(headText, PUBLISHER_HEADER), notPublished: headerValue(headText, NOT_PUBLISHED_HEADER), instance: headerValue(headText, INSTANCE_HEADER), windows };
}
