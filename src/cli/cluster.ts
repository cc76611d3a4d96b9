// `gatehouse cluster migrate|status`: the schema of the cluster database, and the instances sharing it.
// Both read the `cluster:` block of routes.yaml; failures print one line and exit 1.
import type { Command } from 'commander';
import type { ClusterSettings } from '../config/clusterSettings.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { displayLines, displaySafe } from '../text/displayText.ts';

/** The `cluster:` block of the config, or undefined after saying why (exit 1). */
export async function clusterSettingsOf(configFile: string): Promise<ClusterSettings | undefined> {
  return (await clusterConfigOf(configFile))?.cluster;
}

/** The config, when it is valid and has a `cluster:` block; else undefined after saying why (exit 1). */
async function clusterConfigOf(configFile: string): Promise<(GatewayConfig & { cluster: ClusterSettings }) | undefined> {
  const { formatConfigError, loadConfig } = await import('../configCheck/loadConfig.ts');
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(`${formatConfigError(e)}\n`);
    process.stderr.write(`error: ${configFile} is not valid\n`);
    process.exitCode = 1;
    return undefined;
  }
  if (!loaded.config.cluster) {
    process.stderr.write(`error: ${configFile} has no cluster: block (a single gateway needs no database)\n`);
    process.exitCode = 1;
    return undefined;
  }
  return { ...loaded.config, cluster: loaded.config.cluster };
}

/** Runs `body`; a failure (the database unreachable, a refused migration) is one line on stderr and exit 1. */
async function reporting(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    const message = error instanceof Error ? error.message || error.constructor.name : String(error);
    process.stderr.write(`error: ${displaySafe(message.split('\n')[0] ?? '')}\n`);
    process.exitCode = 1;
  }
}

export function registerCluster(program: Command): void {
  const cluster = program.command('cluster').description('several gateway instances sharing membership and revocations in PostgreSQL (cluster: in routes.yaml)');
  cluster
    .command('migrate')
    .description('create or upgrade the schema in the cluster database (safe to run from several hosts at once)')
    .option('-c, --config <file>', 'configuration file', 'routes.yaml')
    .action((options: { config: string }) =>
      reporting(async () => {
        const settings = await clusterSettingsOf(options.config);
        if (!settings) return;
        const { migrateDatabase } = await import('../cluster/clusterCommands.ts');
        const report = await migrateDatabase(settings);
        if (report.applied.length === 0) process.stdout.write(`schema is at version ${report.to}: nothing to do\n`);
        else process.stdout.write(`schema version ${report.from} -> ${report.to}: applied ${report.applied.map((m) => `${m.version} (${m.name})`).join(', ')}\n`);
      }),
    );
  cluster
    .command('status')
    .description('list the instances registered in the cluster database, their heartbeat age and config hash')
    .option('-c, --config <file>', 'configuration file', 'routes.yaml')
    .option('--json', 'print JSON instead of a table')
    .action((options: { config: string; json?: boolean }) =>
      reporting(async () => {
        const settings = await clusterSettingsOf(options.config);
        if (!settings) return;
        const { clusterStatus, formatStatus } = await import('../cluster/clusterCommands.ts');
        const status = await clusterStatus(settings);
        process.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : displayLines(formatStatus(status)));
      }),
    );
  cluster
    .command('checkpoint')
    .description("print the newest audit checkpoint the cluster database recorded for a log (an anchor for audit verify --anchor), or list every log's")
    .option('-c, --config <file>', 'configuration file', 'routes.yaml')
    .option('--origin <name>', "the log's origin (default: this config's audit log, as the gateway names it on this host)")
    .option('--list', 'list every origin: newest size, how many checkpoints, which instance, when')
    .action((options: { config: string; origin?: string; list?: boolean }) =>
      reporting(async () => {
        const config = await clusterConfigOf(options.config);
        if (!config) return;
        const { printCheckpoint } = await import('../cluster/clusterCommands.ts');
        const { defaultAuditOrigin } = await import('../audit/auditLogStart.ts');
        const origin = options.origin ?? config.audit.origin ?? defaultAuditOrigin(config.audit.file);
        const out = await printCheckpoint(config.cluster, options.list ? undefined : origin);
        if (out === undefined) {
          process.stderr.write(`error: the cluster database has no checkpoint of ${displaySafe(origin)}\n`);
          process.exitCode = 1;
          return;
        }
        process.stdout.write(options.list ? displayLines(out) : out);
      }),
    );
}
