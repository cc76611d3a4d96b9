// `gatehouse serve`: run the gateway on a configuration (see runGateway.ts for the life cycle).
import type { Command } from 'commander';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the gateway (SIGHUP reloads config and revocation list; SIGTERM drains and stops)')
    .option('-c, --config <file>', 'routes.yaml to serve', 'routes.yaml')
    .action(async (opts: { config: string }) => {
      // Loaded when the command runs, so other commands do not pay for the gateway's modules.
      const { runGateway } = await import('./runGateway.ts');
      await runGateway(opts.config);
    });
}
