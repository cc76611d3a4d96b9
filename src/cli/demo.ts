// `gatehouse demo` (what `npm start` runs): prepares the demo's certificates, keys and token, starts
// the echo service on its UNIX socket, serves the shipped routes.yaml and prints the curl that reaches it.
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import type { GatewayConfig } from '../config/schema.ts';
import { say } from './say.ts';

/** Creates the audit signing key the demo config names, if missing; returns what to tell the user. */
async function demoAuditKey(configFile: string): Promise<string | undefined> {
  const { parse } = await import('yaml');
  const { ensureAuditSigningKey } = await import('../audit/auditCheckpoint.ts');
  const raw = parse(readFileSync(configFile, 'utf8')) as { audit?: { signingKey?: string } };
  if (!raw.audit?.signingKey) return undefined;
  const keyFile = resolve(dirname(resolve(configFile)), raw.audit.signingKey);
  const made = ensureAuditSigningKey(keyFile);
  if (!made.ok) throw new Error(made.error.message);
  return made.value.created ? `audit signing key written to ${keyFile} (key id ${made.value.keyId}; verify with ${keyFile.replace(/\.key$/, '.pub')})` : undefined;
}

/** `--listen HOST:PORT` (`[v6]:PORT`; port 0 takes a free one). */
export function parseListen(value: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(value);
  if (!match || Number(match[2]) > 65535) throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:8444 or [::1]:8444');
  return value;
}

/** The config with its tcp listeners replaced by `listen` (its unix listeners stay). */
function listeningOn(listen: string): (config: GatewayConfig) => GatewayConfig {
  return (config) => ({ ...config, listen: [{ tcp: listen }, ...config.listen.filter((l) => l.tcp === undefined)] });
}

/** What a user types to run `gatehouse` here: the installed command, or from a checkout's sources the npm script. */
function gatehouseCommand(): string {
  return import.meta.url.endsWith('.ts') ? 'npm run gatehouse --' : 'gatehouse';
}

/** The URL curl reaches the bound `host:port` with: the development certificate names localhost. */
function demoUrl(address: string, routePath: string): string {
  const host = address.slice(0, address.lastIndexOf(':'));
  const port = address.slice(address.lastIndexOf(':') + 1);
  const local = ['127.0.0.1', '0.0.0.0', '[::]', '[::1]', 'localhost'].includes(host);
  return `https://${local ? 'localhost' : host}:${port}${routePath}hello`;
}

/** A busy port in the demo's words: the address, and the option that changes it. */
function addressInUse(err: unknown, listen: string | undefined): string | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' && !message.includes('EADDRINUSE')) return undefined;
  const address = listen ?? /(\S+:\d+)\s*$/.exec(message)?.[1] ?? 'the address';
  return `${address} is already in use (another gateway or demo?): choose another address with --listen HOST:PORT`;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the gateway on the demo configuration: creates dev certificates, keys and a token if missing, starts a demo echo service on a UNIX socket')
    .option('-c, --config <file>', 'routes.yaml to serve', 'routes.yaml')
    .option('--listen <host:port>', "serve on this address instead of the configuration's tcp listeners (e.g. 127.0.0.1:8444)", parseListen)
    .action(async (opts: { config: string; listen?: string }) => {
      // Loaded when the command runs, so other commands do not pay for these modules.
      const { prepareDemo } = await import('../demo/prepareDemo.ts');
      const { startEchoService } = await import('../demo/echoService.ts');
      const { runGateway } = await import('./runGateway.ts');
      let l: Awaited<ReturnType<typeof prepareDemo>>;
      try {
        l = await prepareDemo(opts.config, say);
        const signingKey = await demoAuditKey(opts.config);
        if (signingKey) say(signingKey);
      } catch (err) {
        say(`demo setup failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      }
      const echo = await startEchoService(l.echoSocket, 'demo').catch((err: unknown) => {
        say(`demo echo service: ${err instanceof Error ? err.message : String(err)} (is the demo already running?)`);
        process.exit(1);
      });
      say(`demo echo service listening on unix:${l.echoSocket}`);
      process.once('exit', () => echo.close());
      const gateway = await runGateway(opts.config, {
        ...(opts.listen !== undefined && { adjust: listeningOn(opts.listen) }),
        explainStartFailure: (err) => addressInUse(err, opts.listen),
      });
      const bound = gateway.listeners.find((listener) => listener.port !== undefined)?.address ?? opts.listen ?? '127.0.0.1:8443';
      const rel = (p: string) => relative(process.cwd(), p) || '.';
      const curl = [
        'curl',
        `--cacert ${rel(join(l.certs, 'ca.crt'))}`,
        `--cert ${rel(join(l.certs, 'clients', `${l.clientName}.crt`))}`,
        `--key ${rel(join(l.certs, 'clients', `${l.clientName}.key`))}`,
        `-H "Authorization: Bearer $(cat ${rel(l.token)})"`,
        demoUrl(bound, l.routePath),
      ].join(' \\\n     ');
      const verify = `${gatehouseCommand()} audit verify --key ${rel(join(l.certs, 'audit-signing.pub'))} ${rel(l.auditFile)}*`;
      process.stderr.write(`\nThe gateway is up. Reach the demo service through it with:\n\n  ${curl}\n\nAudit log: ${rel(l.auditFile)} (check it: ${verify}; kill -USR1 reopens it)\nStop with Ctrl-C.\n\n`);
    });
}
