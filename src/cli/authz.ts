// `gatehouse authz explain`: dry-run a route's policy for a token and a client certificate, printing
// the facts, the token's blocks, the decision and the matching policy or the failing checks.
import fs from 'node:fs';
import type { Command } from 'commander';
import { choiceOption } from './choiceOption.ts';
import type { Explanation } from '../admission/explainDecision.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { displayDatalog, displayLines, displaySafe } from '../text/displayText.ts';

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

function fail(message: string): void {
  process.stderr.write(`error: ${displayLines(message)}\n`);
  process.exitCode = 1;
}

/** Lines indented by two, each escaped (a fact or rule with a line break in a string literal stays one line). */
function indent(lines: string[]): string[] {
  return lines.map((l) => `  ${displaySafe(l)}`);
}

export function formatExplanation(e: Explanation): string {
  const d = e.decision;
  const out: string[] = [
    `route:     ${displaySafe(e.route)}`,
    `can see:   ${e.routeFacts.gateway.join(', ')}; from the token: ${e.routeFacts.token.join(', ')}`,
    'facts:',
    ...indent(e.facts),
    'policy:',
    ...indent(e.policy.flatMap((p) => displayDatalog(p).split('\n'))),
  ];
  out.push(`token:     ${e.blocks.length > 0 ? `${e.blocks.length} block(s), signatures verified` : 'not verified'}`);
  for (const b of e.blocks) out.push(`  block ${b.index}${b.index === 0 ? ' (authority)' : ''}, revocation id ${b.revocationId.slice(0, 16)}…`, ...displayDatalog(b.source).split('\n').map((l) => `    ${l}`));
  if (d.allow) {
    out.push(`decision:  ALLOW (user ${displaySafe(d.user)}${d.groups.length > 0 ? `, groups ${displaySafe(d.groups.join(', '))}` : ''})`, `matched:   ${displaySafe(d.matched)}`);
  } else {
    out.push(`decision:  DENY ${d.status} (${displaySafe(d.clientReason)})${d.user !== undefined ? ` for user ${displaySafe(d.user)}` : ''}`, `reason:    ${displaySafe(d.reason)}`);
    if (e.failingChecks.length > 0) out.push('failing checks:', ...indent(e.failingChecks.map((c) => `${c.origin}: ${c.rule}`)));
  }
  out.push(`evaluated: in ${e.elapsedMs.toFixed(1)} ms (the gateway's hard deadline for this route: ${e.deadlineMs} ms)`);
  for (const note of e.notes) out.push(`note:      ${displaySafe(note)}`);
  return out.join('\n') + '\n';
}

function parseParams(pairs: string[]): Record<string, string> | string {
  const params: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return `invalid --param ${JSON.stringify(pair)}: expected name=value`;
    params[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return params;
}

interface ExplainOptions {
  config: string;
  /** Required unless --claims is given. */
  route?: string;
  /** IdP claims (JSON): explain what the issuer's claim rules would give them instead of a route's policy. */
  claims?: string;
  group?: string[];
  grantRoute?: string[];
  ttl?: string;
  sessionEnds?: string;
  token?: string;
  tokenFile?: string;
  cert: string;
  method?: string;
  path?: string;
  host?: string;
  param?: string[];
  sourceIp: string;
  protocol?: 'http' | 'websocket' | 'tcp' | 'udp';
  time?: string;
  json?: boolean;
}

async function explain(options: ExplainOptions): Promise<void> {
  const { loadConfig, formatConfigError } = await import('../configCheck/loadConfig.ts');
  const { readTokenInput } = await import('../token/tokenInput.ts');
  const { identityFromPem } = await import('../tls/peerIdentity.ts');
  const { explainDecision } = await import('../admission/explainDecision.ts');
  const loaded = await loadConfig(options.config);
  if (!loaded.ok) return fail(`${options.config} is not valid:\n${loaded.errors.map(formatConfigError).join('\n')}`);
  if (options.claims !== undefined) return explainClaimsCommand(loaded.config, options.claims, options);
  if (options.route === undefined) return fail('give --route (a route\'s policy for a token) or --claims (the issuer\'s rules for IdP claims)');
  const token = await readTokenInput(options);
  if (!token.ok) return fail(token.error.message);
  let client;
  try {
    client = identityFromPem(fs.readFileSync(options.cert));
  } catch (error) {
    return fail(`cannot read client certificate ${options.cert}: ${(error as Error).message}`);
  }
  const params = parseParams(options.param ?? []);
  if (typeof params === 'string') return fail(params);
  const time = options.time !== undefined ? new Date(options.time) : undefined;
  if (time !== undefined && !Number.isFinite(time.getTime())) return fail(`invalid --time ${JSON.stringify(options.time)}: expected a date such as 2030-01-01T00:00:00Z`);
  const result = await explainDecision({
    config: loaded.config,
    route: options.route,
    token: token.value,
    client,
    params,
    sourceIp: options.sourceIp,
    ...(options.method !== undefined && { method: options.method }),
    ...(options.path !== undefined && { path: options.path }),
    ...(options.host !== undefined && { host: options.host }),
    ...(options.protocol !== undefined && { protocol: options.protocol }),
    ...(time !== undefined && { time }),
  });
  if (!result.ok) return fail(result.reason);
  process.stdout.write(options.json ? `${JSON.stringify(result.value, null, 2)}\n` : formatExplanation(result.value));
  // 0 allow, 2 deny, 1 the question could not be answered.
  if (!result.value.decision.allow) process.exitCode = 2;
}

/** `--claims`: the issuer's claim rules for one login, instead of a route's policy for a token. */
async function explainClaimsCommand(config: GatewayConfig, claimsFile: string, options: ExplainOptions): Promise<void> {
  const { identityFromPem } = await import('../tls/peerIdentity.ts');
  const { explainClaims, formatClaimsAnswer } = await import('../issuer/explainClaims.ts');
  const { parseTtl } = await import('../token/duration.ts');
  let certificate;
  try {
    certificate = identityFromPem(fs.readFileSync(options.cert));
  } catch (error) {
    return fail(`cannot read client certificate ${options.cert}: ${(error as Error).message}`);
  }
  const ttl = options.ttl === undefined ? undefined : parseTtl(options.ttl);
  if (ttl !== undefined && !ttl.ok) return fail(ttl.error.message);
  const ends = options.sessionEnds === undefined ? undefined : new Date(options.sessionEnds);
  if (ends !== undefined && !Number.isFinite(ends.getTime())) return fail(`invalid --session-ends ${JSON.stringify(options.sessionEnds)}: expected a date such as 2030-01-01T00:00:00Z`);
  const time = options.time !== undefined ? new Date(options.time) : undefined;
  if (time !== undefined && !Number.isFinite(time.getTime())) return fail(`invalid --time ${JSON.stringify(options.time)}`);
  const answer = explainClaims({
    config,
    claimsFile,
    certificate,
    request: { ...(options.group && { groups: options.group }), ...(options.grantRoute && { routes: options.grantRoute }), ...(ttl?.ok && { ttlSeconds: ttl.value }) },
    ...(ends !== undefined && { idpSessionEndsAt: ends }),
    ...(time !== undefined && { now: time }),
  });
  if (!answer.ok) return fail(answer.reason);
  process.stdout.write(options.json ? `${JSON.stringify(answer.result, null, 2)}\n` : formatClaimsAnswer(answer.result));
  if (!answer.result.ok) process.exitCode = 2;
}

export function registerAuthz(program: Command): void {
  const authz = program.command('authz').description('authorization tools');
  authz
    .command('explain')
    .description("dry-run a route's policy for a token and a client certificate: facts, decision, matching policy or failing checks")
    .option('-c, --config <file>', 'gateway configuration', 'routes.yaml')
    .option('--route <name>', 'route to check (unless --claims)')
    .option('--claims <file>', "IdP claims (JSON): show what the issuer's claim rules give this login with --cert, instead of a route's decision")
    .option('--group <name>', 'with --claims: ask for this group only (repeatable)', collect)
    .option('--grant-route <name>', 'with --claims: ask for this route only (repeatable)', collect)
    .option('--ttl <duration>', 'with --claims: ask for this lifetime (30m, 8h)')
    .option('--session-ends <date>', 'with --claims: when the IdP session ends (RFC 3339)')
    .option('--token <token>', 'the token text')
    .option('--token-file <file>', 'file holding the token (- for standard input)')
    .requiredOption('--cert <pem>', 'client certificate presented (PEM)')
    .option('--method <method>', 'HTTP method', 'GET')
    .option('--path <path>', 'request path (with query); it must reach --route')
    .option('--host <host>', 'Host header')
    .option('--param <name=value>', 'set a param(name, value) fact (repeatable; path captures are set from --path)', collect)
    .option('--source-ip <ip>', 'client address', '127.0.0.1')
    .addOption(choiceOption('--protocol <protocol>', "the request's protocol (default: the route's first)", ['http', 'websocket', 'tcp', 'udp']))
    .option('--time <date>', 'evaluate at this time instead of now (RFC 3339)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExit status: 0 allowed, 2 denied, 1 the question could not be answered (bad config, token file, certificate).')
    .action(async (options: ExplainOptions) => {
      try {
        await explain(options);
      } catch (error) {
        fail(error instanceof Error ? error.message : String(error));
      }
    });
}
