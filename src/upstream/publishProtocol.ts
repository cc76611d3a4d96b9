// The publish protocol, shared by the gateway and `gatehouse publish` (its path is reserved in routing/):
// the upgrade token, the header naming the services, service names, and how each user stream is asked for.
/** Upgrade token: after 101 the connection carries HTTP/2, the gateway as client, the publisher as server. */
export const PUBLISH_PROTOCOL = 'gatehouse-publish.v1';
/** Request header listing the services to publish, comma-separated. */
export const SERVICES_HEADER = 'gatehouse-publish';
/**
 * Request header: of the services named, those that speak raw TCP rather than HTTP (`NAME/tcp=` on the
 * command line), comma-separated. The portal offers `tunnel -L` for them instead of a web link.
 */
export const RAW_TCP_HEADER = 'gatehouse-publish-tcp';
/**
 * Request header: the publisher process's own random id (the same on every connection of its fleet), so the
 * instances count one process once against publish.publishersPerUser; `ID; replaces=CONN` when this
 * connection takes the place of connection CONN (a reconnect, a renewed token) on the instance it lands on.
 */
export const PUBLISHER_ID_HEADER = 'gatehouse-publisher-id';
/** A publisher id: 16 to 64 base64url characters (the client sends 128 random bits, 22 characters). */
export const PUBLISHER_ID = /^[A-Za-z0-9_-]{16,64}$/;

/** What the gateway tells a second connection of one publisher to one instance (it then tries to land on another). */
export const ALREADY_CONNECTED = 'publisher already connected to this instance';

/** The publisher id and the connection it replaces, checked; both absent from an older publisher. */
export function parsePublisherId(header: string | undefined): { ok: true; id?: string; replaces?: string } | { ok: false; reason: string } {
  if (header === undefined) return { ok: true };
  const m = /^([^;\s]*)\s*(?:;\s*replaces=([0-9a-f]{1,32}))?$/.exec(header.trim());
  if (!m || !PUBLISHER_ID.test(m[1] ?? '')) return { ok: false, reason: `${PUBLISHER_ID_HEADER} ${JSON.stringify(header.slice(0, 80))}: expected 16 to 64 base64url characters, optionally "; replaces=CONNECTION"` };
  return { ok: true, id: m[1] as string, ...(m[2] !== undefined && { replaces: m[2] }) };
}
/** 101 headers: the user the services are published under (the token's), and the publisher's connection id. */
export const USER_HEADER = 'gatehouse-user';
export const PUBLISHER_HEADER = 'gatehouse-publisher';
/** 101 header, in a cluster: the instance's name, so a publisher behind one balancer name can hold k distinct instances. */
export const INSTANCE_HEADER = 'gatehouse-instance';
/** 101 header: services named but not published (the others are), each `name (reason)`, separated by `; `. */
export const NOT_PUBLISHED_HEADER = 'gatehouse-not-published';
/** On a refused stream (publisher to gateway): why the local service could not be reached. */
export const STREAM_ERROR_HEADER = 'gatehouse-error';
/**
 * Each user stream is an HTTP/2 CONNECT stream whose :authority is the service name; the publisher
 * answers 200 once its local target is connected, then carries bytes both ways until each side ends.
 */
export const MAX_SERVICES_PER_PUBLISHER = 64;

/** Lower case letters, digits, `_` and `-`: a service name is one path segment and one label of a tunnel name. */
export const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function serviceNameProblem(name: string): string | undefined {
  return SERVICE_NAME.test(name) ? undefined : `service name ${JSON.stringify(name.slice(0, 80))}: use lower case letters, digits, _ and - (at most 63, starting with a letter or digit)`;
}

/** The services a publisher names in its header, checked. */
export function parseServiceList(header: string | undefined): { ok: true; services: string[] } | { ok: false; reason: string } {
  const services = (header ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (services.length === 0) return { ok: false, reason: `no services named (${SERVICES_HEADER} header)` };
  if (services.length > MAX_SERVICES_PER_PUBLISHER) return { ok: false, reason: `${services.length} services named; at most ${MAX_SERVICES_PER_PUBLISHER} per publisher` };
  for (const s of services) {
    const problem = serviceNameProblem(s);
    if (problem) return { ok: false, reason: problem };
  }
  if (new Set(services).size !== services.length) return { ok: false, reason: 'a service is named twice' };
  return { ok: true, services };
}

/** The raw TCP services a publisher names (a subset of `services`), checked; none when the header is absent. */
export function parseRawTcpList(header: string | undefined, services: readonly string[]): { ok: true; rawTcp: string[] } | { ok: false; reason: string } {
  const named = namedAmong(header, services, RAW_TCP_HEADER);
  return named.ok ? { ok: true, rawTcp: named.names } : named;
}

/** The names a list header gives (once each), all among `services`. */
function namedAmong(header: string | undefined, services: readonly string[], name: string): { ok: true; names: string[] } | { ok: false; reason: string } {
  const names = [...new Set((header ?? '').split(',').map((s) => s.trim()).filter(Boolean))];
  const unknown = names.find((s) => !services.includes(s));
  if (unknown !== undefined) return { ok: false, reason: `${name} names ${JSON.stringify(unknown.slice(0, 80))}, which is not among the services published` };
  return { ok: true, names };
}

/**
 * Request header: of the services named, the UDP services (`NAME=udp:PORT` on the command line),
 * comma-separated. Only udp routes reach them, by streams marked with DATAGRAMS_HEADER; no other stream does.
 */
export const UDP_HEADER = 'gatehouse-publish-udp';
/**
 * On a user stream (gateway to publisher): `?1` when the stream carries DATAGRAM capsules (RFC 9297) for a UDP
 * service, one flow per stream; absent on a byte stream. Each side refuses a stream of the other kind.
 */
export const DATAGRAMS_HEADER = 'gatehouse-datagrams';

/** The UDP services a publisher names (a subset of `services`, none of them raw TCP), checked; none when the header is absent. */
export function parseUdpList(header: string | undefined, services: readonly string[], rawTcp: readonly string[]): { ok: true; udp: string[] } | { ok: false; reason: string } {
  const named = namedAmong(header, services, UDP_HEADER);
  if (!named.ok) return named;
  const both = named.names.find((s) => rawTcp.includes(s));
  if (both !== undefined) return { ok: false, reason: `${JSON.stringify(both)} is named both a UDP and a raw TCP service` };
  return { ok: true, udp: named.names };
}
