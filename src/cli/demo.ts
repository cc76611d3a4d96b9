// `gatehouse demo` (what `npm start` runs): prepares the demo's certificates, keys and token, starts
// the echo service on its UNIX socket, serves the shipped routes.yaml and prints the curl that reaches it.
import { join, relative } from 'node:path';
import type { Command } from 'commander';
import { say } from './say.ts';

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
      } catch (err) {
        say(`demo setup failed: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      }
      const echo = await startEchoService(l.echoSocket, 'demo');
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
      process.stderr.write(`\nThe gateway is up. Reach the demo service through it with:\n\n  ${curl}\n\nAudit log: ${rel(l.auditFile)}\nStop with Ctrl-C.\n\n`);
    });
}
