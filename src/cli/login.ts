// `gatehouse login` (the device flow through the gateway's issuer, the token saved 0600 for tunnel and
// publish) and `gatehouse logout` (every token of that login revoked, the file removed).
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Command } from 'commander';
import { addGatewayOptions } from './clientOptions.ts';
import { defaultTokenFile, resolveClientSettings, type TunnelFlags } from '../client/clientSettings.ts';
import { expandPath } from '../client/clientConfigFile.ts';
import { endpointOf } from '../client/gatewayEndpoint.ts';
import { logoutLogin, pollDeviceLogin, startDeviceLogin, type LoginFailure } from '../client/loginFlow.ts';
import { certificateRequest, saveLoginCertificate, type CertificateRequest } from '../client/loginCertificate.ts';
import { readTokenFile, removeTokenFile, writeTokenFile } from '../client/tokenFile.ts';
import { EXIT, exitCodeFor } from '../client/tunnelFailure.ts';
import { sayer } from './say.ts';

interface LoginOptions extends TunnelFlags {
  groups?: string;
  routes?: string;
  ttl?: string;
  browser?: boolean;
  certificate?: boolean;
}

const say = sayer('gatehouse login: ');
const sayLogout = sayer('gatehouse logout: ');

function exitWith(code: number, lines: string[], to = say): never {
  for (const line of lines) to(line);
  process.exit(code);
}

/** The exit code of a failed step: a refusal by its status (410, the code expired, is a refusal too), else unreachable. */
function exitOf(failure: LoginFailure): number {
  if (failure.failure) return exitCodeFor(failure.failure);
  if (!failure.refused || failure.status === undefined) return EXIT.upstream;
  return failure.status === 410 ? EXIT.refused : exitCodeFor({ kind: 'refused', status: failure.status, reason: failure.reason });
}

/** A browser is opened only in a graphical session with xdg-open installed (never on a headless login node). */
function openBrowser(url: string): boolean {
  if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return false;
  const opener = (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'xdg-open')).find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (opener === undefined) return false;
  const child = spawn(opener, [url], { stdio: 'ignore', detached: true });
  child.on('error', () => {});
  child.unref();
  return true;
}

const list = (text: string | undefined) => (text === undefined ? undefined : text.split(',').map((s) => s.trim()).filter((s) => s !== ''));

async function login(opts: LoginOptions): Promise<never> {
  const settings = resolveClientSettings(opts, process.env, { noToken: true, ...(opts.certificate && { noCertificate: true }) });
  if (!settings.ok) exitWith(EXIT.usage, settings.errors.map((e) => `error: ${e}`));
  for (const w of settings.warnings) say(w);
  if (opts.ttl !== undefined && !/^\d+[smhd]$/.test(opts.ttl)) exitWith(EXIT.usage, [`error: --ttl ${JSON.stringify(opts.ttl)}: expected a duration such as 30m, 8h or 1d`]);
  const file = settings.settings.tokenFile ?? defaultTokenFile();
  const endpoint = endpointOf(settings.settings);
  const groups = list(opts.groups);
  const routes = list(opts.routes);
  const request = opts.certificate ? certificateRequest() : undefined;
  const started = await startDeviceLogin(endpoint, { ...(groups && { groups }), ...(routes && { routes }), ...(opts.ttl !== undefined && { ttl: opts.ttl }), ...(request && { csr: request.csr }) });
  if (!started.ok) exitWith(exitOf(started), [`error: ${started.reason}`]);
  const { start } = started;
  const page = start.verificationUriComplete ?? start.verificationUri;
  say(`to sign in, open the page below and confirm the code ${start.userCode}`);
  say(`url: ${page}`);
  say(`code: ${start.userCode}`);
  if (opts.browser !== false && openBrowser(page)) say('opened the page in your browser');
  say(`waiting for the sign-in (the code expires in ${Math.round(start.expiresInSeconds / 60)} min)`);
  const done = await pollDeviceLogin(endpoint, start, { slowedDown: (s) => say(`the gateway asked to poll more slowly: every ${s} s`) });
  if (!done.ok) exitWith(exitOf(done), [`error: ${done.reason}`]);
  if (request) await saveCertificate(file, request, done.certificate);
  try {
    writeTokenFile(file, done.stored);
  } catch (err) {
    exitWith(EXIT.usage, [`error: cannot write the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`]);
  }
  const facts = done.stored.login;
  say(`logged in as ${facts.user} through ${facts.gateway}; token saved in ${file} (valid until ${facts.expiresAt}, renewed by tunnel and publish until ${facts.refreshUntil || facts.expiresAt})`);
  process.exit(EXIT.ok);
}

/** Saves the certificate of a certificate login beside the token file (before the token: it is of no use without it). */
async function saveCertificate(tokenFile: string, request: CertificateRequest, certificate: string | undefined): Promise<void> {
  if (certificate === undefined) exitWith(EXIT.upstream, ['error: the gateway issued no certificate with the token (does it set issuer.certificates?)']);
  const saved = await saveLoginCertificate(tokenFile, request, certificate).catch((err: NodeJS.ErrnoException) => ({ ok: false as const, reason: `cannot write beside ${tokenFile}: ${err.code ?? err.message}` }));
  if (!saved.ok) exitWith(saved.reason.startsWith('cannot write') ? EXIT.usage : EXIT.upstream, [`error: ${saved.reason}`]);
  say(`certificate saved in ${saved.files.cert}, its key in ${saved.files.key} (valid until ${saved.notAfter}); tunnel and publish use them unless given --cert/--key`);
}

/** The gateway that issued the stored token, as the file says (logout needs no --gateway). */
function issuingGateway(file: string): string | undefined {
  const read = readTokenFile(file);
  return read.ok ? read.stored.login?.gateway : undefined;
}

async function logout(opts: TunnelFlags): Promise<never> {
  const settings = resolveClientSettings(opts, process.env, { noToken: true, fallbackGateway: issuingGateway });
  // Settings that cannot be resolved (no certificate configured) still leave the file to look for: without one, there is nothing to do.
  const file = settings.ok ? (settings.settings.tokenFile ?? defaultTokenFile()) : expandPath(opts.tokenFile ?? (process.env.GATEHOUSE_TOKEN_FILE || defaultTokenFile()));
  const read = readTokenFile(file);
  if (!read.ok && read.missing) exitWith(EXIT.ok, [`no token file at ${file}: not logged in`], sayLogout);
  if (!settings.ok) exitWith(EXIT.usage, settings.errors.map((e) => `error: ${e}`), sayLogout);
  if (!read.ok) exitWith(EXIT.usage, [`error: ${read.error}`], sayLogout);
  // A token an administrator handed out is not this command's to throw away (nor can the issuer revoke it).
  if (read.stored.login === undefined) exitWith(EXIT.usage, [`error: the token in ${file} was not obtained with gatehouse login; it is left as it is (an administrator revokes it with gatehouse token revoke)`], sayLogout);
  const gateway = settings.settings.gatewayLabel;
  const result = await logoutLogin(endpointOf(settings.settings), read.stored.token);
  if (!result.ok && !result.refused) exitWith(exitOf(result), [`error: ${result.reason}; the token is NOT revoked and ${file} is kept: try again`], sayLogout);
  removeTokenFile(file);
  if (!result.ok) exitWith(exitOf(result), [`${gateway} did not revoke the token: ${result.reason}; removed ${file}`], sayLogout);
  exitWith(EXIT.ok, [`revoked ${result.revoked.length} token(s) of this login at ${gateway}; removed ${file}`], sayLogout);
}

export function registerLogin(program: Command): void {
  const command = program
    .command('login')
    .description("get a short-lived token from the site's identity provider (device flow through the gateway), saved for tunnel and publish")
    .option('--groups <list>', 'ask only for these of your groups (comma list)')
    .option('--routes <list>', 'ask only for these routes (comma list)')
    .option('--ttl <duration>', 'ask for a shorter life, e.g. 1h (the site caps it)')
    .option('--no-browser', 'never open a browser; only print the page and the code')
    .option('--certificate', 'without a client certificate: a key is made here and the gateway issues a short-lived certificate with the token (sites that set issuer.certificates)');
  addGatewayOptions(command)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage))
    .addHelpText(
      'after',
      `
Prints a page and a code: open the page (on any device), sign in with the site's identity provider and
confirm the code. The token is then saved in --token-file (default $XDG_CONFIG_HOME/gatehouse/token,
else ~/.config/gatehouse/token), mode 0600, bound to your client certificate. gatehouse tunnel and
publish renew it before it expires, until the site's limit; then they say "log in again".

Exit codes: 0 logged in, 2 bad options or files, 3 gateway unreachable or TLS failed,
4 refused (sign-in denied, not allowed by the site's rules, or the code expired).`,
    )
    .action((opts: LoginOptions) => login(opts));
}

export function registerLogout(program: Command): void {
  const out = program.command('logout').description('revoke every token of your login at the gateway and remove the token file');
  addGatewayOptions(out)
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage))
    .action((opts: TunnelFlags) => logout(opts));
}
