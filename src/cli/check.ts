// `gatehouse check`: validates routes.yaml and the files it names without starting anything.
// Prints every error (and warning) as file:line:column: key: message on stderr and exits 1, or a one-line OK.
import type { Command } from 'commander';

const warningCount = (n: number): string => `${n} ${n === 1 ? 'warning' : 'warnings'}`;

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('validate a gateway configuration and every file it names; exit 1 with all errors')
    .option('-c, --config <file>', 'configuration file', 'routes.yaml')
    .option('--strict', 'fail (exit 1) on warnings too: a configuration that loads but cannot work as written')
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
Warns (fails with --strict) about what loads but cannot work as written:
  - a policy that reads a fact no request, token or rule of the policy states (a misspelt "usr($u)"),
  - a policy that reads a fact the route's protocols never carry (method, host and path on a
    tcp-only route; service, token_blocks, publish_granted outside publish.policy),
  - a unix: upstream whose directory does not exist (for a template, its fixed part),
  - a unix: upstream with a {param} and no socketOwner (refused for unixgram:),
  - a unixgram: upstream with socketOwner and no unixgramReplies: any-local-user (the owner's
    service could not answer).
Each error names file:line:column and the key, e.g.
  routes.yaml:12:5: routes[2].upstream: expected unix:/path or tcp:host:port`,
    )
    .action(async (options: { config: string; strict?: boolean }) => {
      const { formatConfigError, loadConfig } = await import('../configCheck/loadConfig.ts');
      const result = await loadConfig(options.config);
      const lines = [...(result.ok ? [] : result.errors), ...result.warnings].sort((a, b) => a.line - b.line || a.column - b.column);
      for (const line of lines) process.stderr.write(`${formatConfigError(line)}\n`);
      // Readability proved as root says little about the gateway's own user.
      if (process.getuid?.() === 0) process.stderr.write(`note: checked as root: run check as the gateway's user (e.g. sudo -u gatehouse gatehouse check) to prove it can read its files\n`);
      if (!result.ok || (options.strict && result.warnings.length > 0)) {
        if (result.ok) process.stderr.write(`${options.config}: ${warningCount(result.warnings.length)}, refused by --strict\n`);
        process.exitCode = 1;
        return;
      }
      const count = result.config.routes.length;
      const warned = result.warnings.length > 0 ? `, ${warningCount(result.warnings.length)}` : '';
      process.stdout.write(`${options.config}: OK (${count} ${count === 1 ? 'route' : 'routes'}${warned})\n`);
    });
}
