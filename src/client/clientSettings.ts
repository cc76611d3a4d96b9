// Resolves the tunnel client's settings from flags, environment and the client config file
// (flags > environment > file > defaults), then reads and checks every file before anything connects.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { expandPath, readClientConfigFile } from './clientConfigFile.ts';
import { storedLoginCertificate } from './loginCertificate.ts';
import { cleanToken, readTokenFile, tokenProblem, type LoginFacts } from './tokenFile.ts';

/** `http2` (RFC 9298 extended CONNECT) carries UDP flows only. */
export type Transport = 'connect' | 'websocket' | 'http2';

/** What the command line gave (commander's camel-cased option names). */
export interface TunnelFlags {
  gateway?: string;
  cert?: string;
  key?: string;
  ca?: string;
  tokenFile?: string;
  transport?: string;
  config?: string;
}

/** One gateway instance as given: host name or address, port, and `https://host:port` for messages. */
export interface GatewayAddress {
  host: string;
  port: number;
  label: string;
}

/** Everything needed to reach the gateway, read and checked. */
export interface ClientSettings {
  /** `https://host:port` as shown in messages (the first gateway given). */
  gatewayLabel: string;
  host: string;
  port: number;
  /** Every gateway given (`publish` takes several: one connection to each instance); the first is host/port. */
  gateways: GatewayAddress[];
  transport: Transport;
  cert: Buffer;
  key: Buffer;
  /** Absent: the system's CA store verifies the gateway. */
  ca?: Buffer;
  token: string;
  /** The file the token was read from (absent: GATEHOUSE_TOKEN, or a command that needs none). */
  tokenFile?: string;
  /** What `gatehouse login` stored with the token: with it, tunnel and publish renew the token. */
  login?: LoginFacts;
}

export type SettingsResult = { ok: true; settings: ClientSettings; warnings: string[] } | { ok: false; errors: string[] };

/** The user's home: $HOME, else the password database's. */
function homeOf(env: NodeJS.ProcessEnv): string {
  return env.HOME || homedir();
}

export function defaultClientConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(homeOf(env), '.config', 'gatehouse', 'client.yaml');
}

/** `$XDG_CONFIG_HOME/gatehouse/token` (an absolute XDG_CONFIG_HOME only, as the spec says), else `~/.config/gatehouse/token`. */
export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  return join(xdg !== undefined && xdg.startsWith('/') ? xdg : join(homeOf(env), '.config'), 'gatehouse', 'token');
}

type GatewayCheck = { ok: true; host: string; port: number; label: string } | { ok: false; error: string };

export function parseGatewayUrl(text: string): GatewayCheck {
  const bad = (why: string): GatewayCheck => ({ ok: false, error: `gateway ${JSON.stringify(text)}: ${why}` });
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return bad('not a URL; expected https://HOST[:PORT]');
  }
  if (url.protocol !== 'https:') return bad(`the gateway speaks HTTPS only; expected https://HOST[:PORT], not ${url.protocol.replace(/:$/, '')}://`);
  if (url.username || url.password) return bad('credentials do not belong in the URL; the token comes from a file or GATEHOUSE_TOKEN');
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) return bad('expected https://HOST[:PORT] without a path or query');
  const port = url.port ? Number(url.port) : 443;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { ok: true, host, port, label: `https://${url.host}` };
}

function readFileOr(errors: string[], what: string, file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    errors.push(code === 'ENOENT' ? `${what} ${file} does not exist` : `cannot read ${what} ${file}: ${code ?? (err as Error).message}`);
    return undefined;
  }
}

function modeWarning(file: string, what: string): string | undefined {
  try {
    const mode = statSync(file).mode & 0o777;
    if (mode & 0o077) return `warning: ${what} ${file} can be read by other users (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it`;
  } catch {
    // The read reports the problem.
  }
  return undefined;
}

function checkCertificate(errors: string[], warnings: string[], certFile: string, cert: Buffer, keyFile: string, key: Buffer, ca: Buffer | undefined): void {
  try {
    const x509 = new X509Certificate(cert);
    const notAfter = new Date(x509.validTo);
    if (notAfter.getTime() < Date.now()) errors.push(`client certificate ${certFile} expired on ${notAfter.toISOString()}`);
    else if (notAfter.getTime() - Date.now() < 7 * 86400_000) warnings.push(`warning: client certificate ${certFile} expires on ${notAfter.toISOString()}`);
  } catch (err) {
    errors.push(`client certificate ${certFile} is not a PEM certificate: ${(err as Error).message}`);
    return;
  }
  try {
    createSecureContext({ cert, key, ...(ca && { ca }) });
  } catch (err) {
    const message = (err as Error).message;
    if (/key values mismatch/i.test(message)) errors.push(`client key ${keyFile} does not belong to certificate ${certFile}`);
    else errors.push(`cannot use client certificate ${certFile} with key ${keyFile}${ca ? ' and the CA file' : ''}: ${message}`);
  }
}

/** Several gateways, comma-separated (repeated `--gateway` flags arrive joined so). */
function parseGatewayList(text: string, several: boolean, errors: string[]): GatewayAddress[] {
  const items = text.split(',').map((t) => t.trim()).filter((t) => t !== '');
  if (items.length === 0) errors.push('gateway: empty; expected https://HOST[:PORT]');
  if (items.length > 1 && !several) errors.push(`gateway ${JSON.stringify(text)}: this command takes one gateway (publish takes several)`);
  const gateways: GatewayAddress[] = [];
  for (const item of items) {
    const parsed = parseGatewayUrl(item);
    if (!parsed.ok) errors.push(parsed.error);
    else if (!gateways.some((g) => g.label === parsed.label)) gateways.push({ host: parsed.host, port: parsed.port, label: parsed.label });
  }
  return gateways;
}

export interface ResolveOptions {
  /** Accept several gateways (comma list or repeated flag): `publish` connects to each. */
  severalGateways?: boolean;
  /** `gatehouse login`/`logout`: the token file is named (`tokenFile`) but not read; the token is ''. */
  noToken?: boolean;
  /** The gateway when flags, environment and config name none (`logout`: the one the token file says issued it). */
  fallbackGateway?: (tokenFile: string) => string | undefined;
  /** `gatehouse login --certificate`: no client certificate is read nor presented (cert and key are empty). */
  noCertificate?: boolean;
}

/** Flags beat environment, environment beats the config file. Reports every problem at once. */
export function resolveClientSettings(flags: TunnelFlags, env: NodeJS.ProcessEnv = process.env, options: ResolveOptions = {}): SettingsResult {
  const home = homeOf(env);
  const configFile = flags.config !== undefined ? expandPath(flags.config, home) : defaultClientConfigFile(env);
  const file = readClientConfigFile(configFile, flags.config !== undefined, home);
  if (!file.ok) return { ok: false, errors: file.errors };
  const fromFile = file.values;
  const errors: string[] = [];
  const warnings: string[] = [];
  const envValue = (name: string) => (env[name] !== undefined && env[name] !== '' ? env[name] : undefined);
  const pathOf = (flag: string | undefined, envName: string, fileValue: string | undefined) => {
    const chosen = flag ?? envValue(envName);
    return chosen !== undefined ? expandPath(chosen, home) : fileValue;
  };

  const namedTokenFile = pathOf(flags.tokenFile, 'GATEHOUSE_TOKEN_FILE', fromFile.tokenFile) ?? defaultTokenFile(env);
  const gatewayText = flags.gateway ?? envValue('GATEHOUSE_GATEWAY') ?? fromFile.gateway ?? options.fallbackGateway?.(namedTokenFile);
  const gateways = gatewayText === undefined ? [] : parseGatewayList(gatewayText, options.severalGateways === true, errors);
  const gateway = gateways[0];
  if (gatewayText === undefined) errors.push(`no gateway: give --gateway https://HOST[:PORT], set GATEHOUSE_GATEWAY, or put "gateway:" in ${configFile}`);

  const transport = flags.transport ?? envValue('GATEHOUSE_TRANSPORT') ?? fromFile.transport ?? 'connect';
  if (transport !== 'connect' && transport !== 'websocket' && transport !== 'http2') errors.push(`transport ${JSON.stringify(transport)}: expected connect, websocket or http2`);

  // Named nowhere: the certificate of the last `gatehouse login --certificate`, beside the token file.
  const stored = options.noCertificate ? undefined : storedLoginCertificate(namedTokenFile);
  const certFile = options.noCertificate ? '' : pathOf(flags.cert, 'GATEHOUSE_CERT', fromFile.cert) ?? stored?.cert;
  const keyFile = options.noCertificate ? '' : pathOf(flags.key, 'GATEHOUSE_KEY', fromFile.key) ?? stored?.key;
  const caFile = pathOf(flags.ca, 'GATEHOUSE_CA', fromFile.ca);
  if (certFile === undefined) errors.push(`no client certificate: give --cert FILE, set GATEHOUSE_CERT, or put "cert:" in ${configFile}`);
  if (keyFile === undefined) errors.push(`no client key: give --key FILE, set GATEHOUSE_KEY, or put "key:" in ${configFile}`);
  const cert = certFile === undefined ? undefined : certFile === '' ? Buffer.alloc(0) : readFileOr(errors, 'client certificate', certFile);
  const key = keyFile === undefined ? undefined : keyFile === '' ? Buffer.alloc(0) : readFileOr(errors, 'client key', keyFile);
  const ca = caFile === undefined ? undefined : readFileOr(errors, 'gateway CA file', caFile);
  if (keyFile && key) {
    const w = modeWarning(keyFile, 'client key');
    if (w) warnings.push(w);
  }
  // A login's certificate is short-lived by design: its near end is no news (the expiry still is an error).
  const loginCertificate = stored !== undefined && certFile === stored.cert;
  if (certFile && keyFile && cert && key && (caFile === undefined || ca)) checkCertificate(errors, loginCertificate ? [] : warnings, certFile, cert, keyFile, key, ca);
  if (loginCertificate && errors.some((e) => e.includes(' expired on '))) errors.push('that is the certificate of your last certificate login: log in again: gatehouse login --certificate');

  // The token: --token-file, then GATEHOUSE_TOKEN (the token itself), GATEHOUSE_TOKEN_FILE, the file's tokenFile, the default file.
  let token: string | undefined;
  let tokenFile: string | undefined;
  let login: LoginFacts | undefined;
  const envToken = envValue('GATEHOUSE_TOKEN');
  if (options.noToken === true) {
    token = '';
    tokenFile = namedTokenFile;
  } else if (flags.tokenFile === undefined && envToken !== undefined) {
    token = cleanToken(envToken);
    const problem = tokenProblem(token, 'GATEHOUSE_TOKEN');
    if (problem) errors.push(problem);
  } else {
    tokenFile = namedTokenFile;
    const read = readTokenFile(tokenFile);
    if (read.ok) {
      token = read.stored.token;
      login = read.stored.login;
      // A login's token that already ended can only be refused: say what cures it before anything connects.
      if (login !== undefined && Date.parse(login.expiresAt) <= Date.now()) errors.push(`the token in ${tokenFile} (gatehouse login as ${login.user}) ended at ${login.expiresAt}: log in again: gatehouse login`);
    } else if (read.missing && tokenFile === defaultTokenFile(env)) errors.push(`no token: run "gatehouse login", or save a token in ${tokenFile} (chmod 600), or give --token-file FILE, GATEHOUSE_TOKEN_FILE or GATEHOUSE_TOKEN`);
    else errors.push(read.error);
  }

  if (errors.length > 0 || !gateway || !cert || !key || token === undefined) return { ok: false, errors };
  return {
    ok: true,
    warnings,
    settings: { gatewayLabel: gateway.label, host: gateway.host, port: gateway.port, gateways, transport: transport as Transport, cert, key, ...(ca && { ca }), token, ...(tokenFile !== undefined && { tokenFile }), ...(login && { login }) },
  };
}
