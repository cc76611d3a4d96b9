// `gatehouse check`: validates routes.yaml and the files it names without starting anything.
// Prints every error as file:line:column: key: message on stderr and exits 1, or a one-line OK.
import type { Command } from 'commander';

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('validate a gateway configuration and every file it names; exit 1 with all errors')
    .option('-c, --config <file>', 'configuration file', 'routes.yaml')
    .addHelpText(
      'after',
      `
Checks, without starting the gateway:
  - YAML syntax and the schema (unknown keys, missing keys, wrong types),
  - route names and host+path pairs are unique, path templates such as /~{user}/{service}/,
    upstreams use only captured parameters, socketOwner, listen addresses,
  - every route policy compiles as Biscuit Datalog and has an "allow if" rule,
  - tls.cert/key/clientCa, authz.rootKey, authz.revocationList and audit.signingKey exist, are
    readable by the user running this (run it as the gateway's user) and parse, and the TLS key
    belongs to the certificate.
Each error names file:line:column and the key, e.g.
  routes.yaml:12:5: routes[2].upstream: expected unix:/path or tcp:host:port`,
    )
    .action(async (options: { config: string }) => {
      const { formatConfigError, loadConfig } = await import('../config/loadConfig.ts');
      const result = await loadConfig(options.config);
      if (!result.ok) {
        for (const error of result.errors) process.stderr.write(`${formatConfigError(error)}\n`);
        process.exitCode = 1;
        return;
      }
      const count = result.config.routes.length;
      process.stdout.write(`${options.config}: OK (${count} ${count === 1 ? 'route' : 'routes'})\n`);
    });
}
