// `gatehouse serve`: run the gateway on a configuration (see runGateway.ts for the life cycle, and
// processGroup.ts for `--processes`).
import type { Command } from 'commander';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the gateway (SIGHUP reloads config and revocation list; SIGTERM drains and stops)')
    .option('-c, --config <file>', 'routes.yaml to serve', 'routes.yaml')
    .option('-p, --processes <n|auto>', 'gateway processes sharing the listeners (auto: one per core); the primary writes the audit log', '1')
    .action(async (opts: { config: string; processes: string }) => {
      // Loaded when the command runs, so other commands do not pay for the gateway's modules.
      const { parseProcesses, runProcessGroup } = await import('./processGroup.ts');
      const processes = parseProcesses(opts.processes);
      if (processes === undefined) {
        process.stderr.write(`gatehouse: --processes must be a number from 1 to 256 or auto, not ${opts.processes}\n`);
        process.exit(2);
      }
      if (processes === 1 && opts.processes !== 'auto') {
        const { runGateway } = await import('./runGateway.ts');
        await runGateway(opts.config);
        return;
      }
      await runProcessGroup(opts.config, processes);
    });
}
