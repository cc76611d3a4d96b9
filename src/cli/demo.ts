// `gatehouse demo` (what `npm start` runs): prepares the demo's certificates, keys and token, starts
// the echo service on its UNIX socket, serves the shipped routes.yaml and prints the curl that reaches it.
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import type { Command } from 'commander';
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

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run the gateway on the demo configuration: creates dev certificates, keys and a token if missing, starts a demo echo service on a UNIX socket')
    .option('-c, --config <file>', 'routes.yaml to serve', 'routes.yaml')
    .action(async (opts: { config: string }) => {
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
      await runGateway(opts.config);
      process.once('exit', () => echo.close());
      const rel = (p: string) => relative(process.cwd(), p) || '.';
      const curl = [
        'curl',
        `--cacert ${rel(join(l.certs, 'ca.crt'))}`,
        `--cert ${rel(join(l.certs, 'clients', `${l.clientName}.crt`))}`,
        `--key ${rel(join(l.certs, 'clients', `${l.clientName}.key`))}`,
        `-H "Authorization: Bearer $(cat ${rel(l.token)})"`,
        l.url,
      ].join(' \\\n     ');
      process.stderr.write(`\nThe gateway is up. Reach the demo service through it with:\n\n  ${curl}\n\nAudit log: ${rel(l.auditFile)} (check it: gatehouse audit verify --key ${rel(join(l.certs, 'audit-signing.pub'))} ${rel(l.auditFile)}*; kill -USR1 reopens it)\nStop with Ctrl-C.\n\n`);
    });
}
