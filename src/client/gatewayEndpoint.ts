// The gateway as the transports see it: address, client certificate, CA and token, and the TLS
// options every connection to it uses (mTLS, the gateway verified against the site CA, SNI).
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { ClientSettings } from './clientSettings.ts';

export interface GatewayEndpoint {
  host: string;
  port: number;
  label: string;
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  token: string;
}

export function endpointOf(settings: ClientSettings): GatewayEndpoint {
  return { host: settings.host, port: settings.port, label: settings.gatewayLabel, cert: settings.cert, key: settings.key, ...(settings.ca && { ca: settings.ca }), token: settings.token };
}

/** tls.connect options: mTLS, server verified against `ca` (or the system store), SNI unless an IP. */
export function tlsOptions(endpoint: GatewayEndpoint): ConnectionOptions {
  return {
    host: endpoint.host,
    port: endpoint.port,
    cert: endpoint.cert,
    key: endpoint.key,
    ...(endpoint.ca && { ca: endpoint.ca }),
    ...(isIP(endpoint.host) === 0 && { servername: endpoint.host }),
    rejectUnauthorized: true,
  };
}
