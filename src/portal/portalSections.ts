// What the portal shows a signed-in user besides the session: the services they can open (each one
// checked by a dry run of admission with their session), their own recent audit records, and who used
// the services they own (the upstream template's {user} is them): accountability in both directions.
import { opendir } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Admission, AdmissionContext, AdmissionRequest } from '../admission/admitRequest.ts';
import type { AuditRecord } from '../audit/auditRecord.ts';
import { auditTail } from './auditTail.ts';
import type { CompiledRoute } from '../routing/routeTable.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { PublishedListing } from '../upstream/publishedServices.ts';
import { compileTemplate, fillTemplate, matchTemplate, templateNames } from '../routing/template.ts';
import { asLocalPath } from './nextTarget.ts';
import { escapeHtml } from './portalPages.ts';

const MAX_LINKS = 30;
/** Entries of a user's socket directory looked at, and admission dry runs, per view: a directory of a million files costs no more. */
export const MAX_DIRECTORY_ENTRIES = 1024;
const MAX_DRY_RUNS = 64;

export interface SectionInput {
  admission: AdmissionContext;
  /** Admission as it would decide the request (the composition root hands it down: the portal runs after admission). */
  dryRun: (context: AdmissionContext, request: AdmissionRequest) => Promise<Admission>;
  auditFile: string;
  identity: PeerIdentity;
  sourceIp: string;
  /** The session token (the cookie's value): links are offered only where it would be admitted. */
  token: string;
  user: string;
  /** The Host header of the portal request, for links on the same origin and port. */
  hostHeader: string;
  /** What the user publishes right now with `gatehouse publish`. */
  published: readonly PublishedListing[];
  /**
   * Whether the session's token is the user's as minted (no block but the gateway's session block). A lent
   * or attenuated token sees only what it opens, not the account's activity, users or publishers.
   */
  account: boolean;
}

/** Up to `limit` names in `dir`, read a few at a time (the user decides how many there are); none if it cannot be read. */
async function someEntries(dir: string, limit: number): Promise<string[]> {
  const names: string[] = [];
  try {
    // Leaving the loop closes the directory.
    for await (const entry of await opendir(dir, { bufferSize: 64 })) {
      names.push(entry.name);
      if (names.length >= limit) break;
    }
  } catch {
    // Missing or unreadable: no services there.
  }
  return names;
}

/** What a service speaks, for the portal: a web page to link to, raw TCP or UDP (both reached with `tunnel -L`). */
type Speaks = 'web' | 'tcp' | 'udp';

/** A published service speaks raw TCP (`NAME/tcp=`) or UDP (`NAME=udp:`) when a publisher of it says so: a web link to it could not work. */
function speaksOf(service: string, published: readonly PublishedListing[]): Speaks {
  const rows = published.filter((p) => p.service === service);
  return rows.some((p) => p.udp) ? 'udp' : rows.some((p) => p.rawTcp) ? 'tcp' : 'web';
}

/** The service a `published:{user}/NAME` upstream names when NAME is fixed (no capture); undefined otherwise. */
const fixedService = (upstream: string): string | undefined => /^published:[^/]*\/([^{}/]+)$/.exec(upstream)?.[1];

/**
 * Services of `user` an upstream template names: for `published:` the ones the user publishes now (those
 * that speak `speaks`, if given), for `unix:` the sockets found among the first MAX_DIRECTORY_ENTRIES entries of the directory.
 */
export async function servicesOf(upstream: string, user: string, published: readonly PublishedListing[], speaks?: readonly Speaks[]): Promise<Array<Record<string, string>>> {
  // One entry per service, however many replicas publish it.
  if (upstream.startsWith('published:') && /\{service\}/.test(upstream)) {
    return [...new Set(published.map((p) => p.service))].filter((service) => speaks === undefined || speaks.includes(speaksOf(service, published))).map((service) => ({ service }));
  }
  if (!upstream.startsWith('unix:')) return [];
  const filled = fillTemplate(upstream.slice(5), { user });
  if (dirname(filled).includes('{')) return [];
  // Compiled per view: its literal text depends on the user it was filled for.
  const file = compileTemplate(basename(filled), 'paramValue');
  if (file.names.length === 0) return [{}];
  if (file.names.length !== 1) return [];
  const entries = await someEntries(dirname(filled), MAX_DIRECTORY_ENTRIES);
  return entries.flatMap((entry) => {
    const found = matchTemplate(file, entry);
    return found ? [found] : [];
  });
}

/**
 * The ways to fill `templates`' captures for `user`: none but {user}, or {service} from the services found;
 * with `speaks`, only services that speak it (a route's fixed published service included).
 */
async function captureOptions(templates: string, route: CompiledRoute, input: SectionInput, speaks?: readonly Speaks[]): Promise<Array<Record<string, string>>> {
  const fixed = fixedService(route.config.upstream);
  if (speaks !== undefined && fixed !== undefined && !speaks.includes(speaksOf(fixed, input.published))) return [];
  const wanted = new Set(templateNames(templates));
  wanted.delete('user');
  return wanted.size === 0 ? [{}] : wanted.size === 1 && wanted.has('service') ? await servicesOf(route.config.upstream, input.user, input.published, speaks) : [];
}

/** Candidate URLs of one route for `user`: every capture must be the user or a service found on disk. */
async function candidates(route: CompiledRoute, input: SectionInput): Promise<Array<{ host: string; path: string }>> {
  const { config } = route;
  if (!config.protocols.includes('http')) return [];
  const hostTemplate = config.host && config.host !== '*' ? config.host : undefined;
  const port = /:(\d+)$/.exec(input.hostHeader)?.[1];
  const options = await captureOptions(config.path + (hostTemplate ?? ''), route, input, ['web']);
  return options.map((extra) => {
    const params = { user: input.user, ...extra };
    const host = hostTemplate ? `${fillTemplate(hostTemplate, params).toLowerCase()}${port ? `:${port}` : ''}` : input.hostHeader;
    return { host, path: fillTemplate(config.path, params) };
  });
}

/**
 * Tunnel names of published services with no web page to link to: every stream service of a route that carries
 * raw TCP only, those that say they speak raw TCP on a route that carries HTTP too, and the UDP services of a
 * udp route. `tunnel -L` reaches them.
 */
async function tunnelCandidates(route: CompiledRoute, input: SectionInput): Promise<Array<Extract<PortalLink, { tunnel: string }>>> {
  const { config } = route;
  // Only the account's own published services: a session token is limited to the web (no tunnel dry run
  // can pass it), and these are services the user runs; the route's policy still decides at connect.
  if (!input.account || !config.upstream.startsWith('published:')) return [];
  const kind = config.protocols.includes('udp') ? 'udp' : config.protocols.includes('tcp') ? 'tcp' : undefined;
  if (kind === undefined) return [];
  const template = config.tunnel ?? config.name;
  const speaks: Speaks[] = kind === 'udp' ? ['udp'] : config.protocols.includes('http') ? ['tcp'] : ['web', 'tcp'];
  const options = await captureOptions(template, route, input, speaks);
  return options.map((extra) => ({ kind, tunnel: fillTemplate(template, { user: input.user, ...extra }) }));
}

/** A web page to open, or a raw TCP or UDP service reached with `gatehouse tunnel -L`. */
export type PortalLink = { kind: 'web'; href: string } | { kind: 'tcp' | 'udp'; tunnel: string };

/** The routes the user can open: each web candidate admitted by a dry run (GET, the session token), never forwarded; then the raw TCP ones. */
export async function openableLinks(input: SectionInput, routes: readonly CompiledRoute[]): Promise<PortalLink[]> {
  const links: PortalLink[] = [];
  let dryRuns = 0;
  const ask = { identity: input.identity, sourceIp: input.sourceIp, token: input.token };
  for (const route of routes) {
    for (const c of await candidates(route, input)) {
      if (links.length >= MAX_LINKS || dryRuns >= MAX_DRY_RUNS) return links;
      // A link is a path the gateway could have built (a route path of `//x/` would be another site's URL).
      if (c.host.includes('{') || c.path.includes('{') || asLocalPath(c.path) === undefined) continue;
      dryRuns += 1;
      const admitted = await input.dryRun(input.admission, { ...ask, protocol: 'http', method: 'GET', hostHeader: c.host, target: c.path });
      if (admitted.allow) links.push({ kind: 'web', href: c.host === input.hostHeader ? c.path : `https://${c.host}${c.path}` });
    }
    for (const link of await tunnelCandidates(route, input)) {
      if (links.length >= MAX_LINKS) return links;
      if (!link.tunnel.includes('{')) links.push(link);
    }
  }
  return links;
}

function linkItem(link: PortalLink): string {
  if (link.kind === 'web') return `<li><a href="${escapeHtml(link.href)}">${escapeHtml(link.href)}</a></li>`;
  if (link.kind === 'udp') return `<li>UDP: <code>gatehouse tunnel -L udp:5353:${escapeHtml(link.tunnel)}</code></li>`;
  return `<li>raw TCP: <code>gatehouse tunnel -L 8888:${escapeHtml(link.tunnel)}</code></li>`;
}

/** Whether the upstream of a record belongs to `user`: the route's upstream template puts them in {user}. */
export function ownedBy(record: AuditRecord, routes: ReadonlyMap<string, CompiledRoute>, user: string): boolean {
  if (record.route === undefined || record.upstream === undefined) return false;
  const route = routes.get(record.route);
  if (!route || !/\{user\}/.test(route.config.upstream)) return false;
  return matchTemplate(route.upstream, record.upstream)?.user === user;
}

type Timed = AuditRecord & { time?: string };

function table(id: string, headings: string[], rows: string[][]): string {
  if (rows.length === 0) return `<p id="${id}">None recently.</p>`;
  return `<table id="${id}"><tr>${headings.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>
${rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n')}</table>`;
}

/** The portal's sections as HTML. */
export async function portalSections(input: SectionInput): Promise<string[]> {
  const routes = input.admission.routes.list();
  const byName = new Map(routes.map((r) => [r.config.name, r] as const));
  const links = await openableLinks(input, routes);
  const linkSection = `<h2>Services you can open</h2>\n${links.length === 0 ? '<p id="links">None found.</p>' : `<ul id="links">${links.map(linkItem).join('')}</ul>`}`;
  if (!input.account) {
    return [linkSection, `<p id="lent">Signed in with a lent or attenuated token of ${escapeHtml(input.user)}: the account's activity, who used its services and what it publishes are shown only with the token as minted.</p>`];
  }
  const records = (await auditTail(input.auditFile)).records as Timed[];
  const mine = records.filter((r) => r.token?.user === input.user).slice(-20).reverse();
  const usedByOthers = records.filter((r) => (r.event === 'request' || r.event === 'tunnel.open') && r.token?.user !== input.user && ownedBy(r, byName, input.user)).slice(-20).reverse();
  const publishedRows = input.published.map((p) => [p.udp ? `${p.service} (UDP)` : p.service, p.publisher, p.fingerprint, String(p.streamsOpen), String(p.streamsServed)]);
  return [
    `<h2>Services you publish</h2>\n${table('published', ['service', 'publisher connection', 'publisher certificate', 'streams open', 'streams served'], publishedRows)}`,
    linkSection,
    `<h2>Your recent activity</h2>\n${table('activity', ['time', 'event', 'route', 'path', 'decision', 'status', 'auth'], mine.map((r) => [r.time ?? '', r.event, r.route ?? '', r.path ?? r.target ?? '', r.decision ?? '', String(r.status ?? ''), r.auth ?? '']))}`,
    `<h2>Who used your services</h2>\n${table('used-by', ['time', 'user', 'certificate', 'token blocks', 'route', 'path', 'decision', 'status'], usedByOthers.map((r) => [r.time ?? '', r.token?.user ?? '', `${r.client?.cn ?? ''} ${r.client?.fingerprint ?? ''}`, String(r.token?.revocationIds?.length ?? ''), r.route ?? '', r.path ?? '', r.decision ?? '', String(r.status ?? '')]))}`,
  ];
}
