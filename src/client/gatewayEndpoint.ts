// The gateway as the transports see it: address, client certificate, CA and token, and the TLS
// options every connection to it uses (mTLS, the gateway verified against the site CA, SNI).
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { ClientSettings } from './clientSettings.ts';

/**
 * The token requests carry: a fixed one, or a holder whose `current` a renewal replaces (shared by
 * reference by every copy of the endpoint, so each new tunnel or registration sends the newest).
 */
export type TokenSource = string | { readonly current: string };

/** The bearer token to send now. */
export function bearerOf(endpoint: Pick<GatewayEndpoint, 'token'>): string {
  return typeof endpoint.token === 'string' ? endpoint.token : endpoint.token.current;
}

export interface GatewayEndpoint {
  /** The name the gateway's certificate must carry (and the Host header). */
  host: string;
  /** The address to dial when a name resolved to several instances; absent: dial `host`. */
  address?: string;
  port: number;
  label: string;
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  token: TokenSource;
  /** `gatehouse publish`: the largest receive window of one stream (bytes); absent: the protocol's default. */
  receiveWindow?: number;
}

/** `token`: the holder a renewal updates (default: the settings' token, fixed). */
export function endpointOf(settings: ClientSettings, token: TokenSource = settings.token): GatewayEndpoint {
  return { host: settings.host, port: settings.port, label: settings.gatewayLabel, cert: settings.cert, key: settings.key, ...(settings.ca && { ca: settings.ca }), token };
}

/** One endpoint per gateway given (same certificate, key, CA and token). */
export function endpointsOf(settings: ClientSettings, token: TokenSource = settings.token): GatewayEndpoint[] {
  const base = endpointOf(settings, token);
  return settings.gateways.map((g) => ({ ...base, host: g.host, port: g.port, label: g.label }));
}

/** tls.connect options: mTLS, server verified against `ca` (or the system store), SNI unless an IP. */
export function tlsOptions(endpoint: GatewayEndpoint): ConnectionOptions {
  return {
    host: endpoint.address ?? endpoint.host,
    port: endpoint.port,
    // Empty for `gatehouse login --certificate`: no certificate is presented at all.
    ...(endpoint.cert.length > 0 && { cert: endpoint.cert, key: endpoint.key }),
    ...(endpoint.ca && { ca: endpoint.ca }),
    ...(isIP(endpoint.host) === 0 && { servername: endpoint.host }),
    rejectUnauthorized: true,
  };
}
