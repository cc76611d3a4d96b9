// Runs the gateway for `gatehouse serve` and `gatehouse demo`: load and validate the config, start,
// reopen the audit file on SIGUSR1 and SIGHUP, reload on SIGHUP (keeping the running config on
// errors), drain on SIGTERM/SIGINT. (`serve --processes N`: see processGroup.ts.)
import { formatConfigError, loadConfig } from '../configCheck/loadConfig.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { startGateway, type Gateway, type GatewayProcessDeps } from '../gateway/gateway.ts';
import { say } from './say.ts';

/** Loads and validates `configFile`, or prints every error and exits 1. */
export async function loadConfigOrExit(configFile: string): Promise<{ config: GatewayConfig; file: string }> {
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(formatConfigError(e) + '\n');
    say(`not started: ${loaded.errors.length} configuration error(s)`);
    process.exit(1);
  }
  for (const w of loaded.warnings) process.stderr.write(formatConfigError(w) + '\n');
  return loaded;
}

/** How a command adapts the gateway it runs: the config as loaded (`demo --listen`), and its own words for a failed start. */
export interface GatewayAdjustments {
  adjust?: (c: GatewayConfig) => GatewayConfig;
  /** One line saying why the gateway did not start, when the command knows better than the error; undefined for the error's own. */
  explainStartFailure?: (error: unknown) => string | undefined;
}

/** Starts the gateway on `configFile` (with `adjust` applied to the config), or says why not and exits 1. */
export async function startOrExit(configFile: string, adjust: (c: GatewayConfig) => GatewayConfig = (c) => c, deps: GatewayProcessDeps = {}, explain?: GatewayAdjustments['explainStartFailure']): Promise<Gateway> {
  const loaded = await loadConfigOrExit(configFile);
  try {
    return await startGateway(adjust(loaded.config), loaded.file, deps);
  } catch (err) {
    say(`not started: ${explain?.(err) ?? (err instanceof Error ? err.message : String(err))}`);
    process.exit(1);
  }
}

/** SIGHUP's work: re-read the config and apply it (the running one stays on any error), then the revocation lists. */
export async function reloadFromFile(gateway: Gateway, configFile: string, adjust: (c: GatewayConfig) => GatewayConfig = (c) => c): Promise<void> {
  const next = await loadConfig(configFile);
  if (!next.ok) {
    for (const e of next.errors) process.stderr.write(formatConfigError(e) + '\n');
    gateway.audit.write({ event: 'config.reload', decision: 'deny', reason: `kept the running config: ${next.errors.map(formatConfigError).join('; ')}` });
    say('reload refused; still running the previous configuration');
    return;
  }
  const result = await gateway.reload(adjust(next.config), next.file);
  say(result.ok ? 'configuration reloaded' : `reload refused (${result.reason}); still running the previous configuration`);
  await gateway.reloadRevocations();
}

/** Loads `configFile` and runs the gateway until a signal stops it. Exits the process on fatal errors. */
export async function runGateway(configFile: string, { adjust = (c) => c, explainStartFailure }: GatewayAdjustments = {}): Promise<Gateway> {
  const gateway = await startOrExit(configFile, adjust, {}, explainStartFailure);
  for (const l of gateway.listeners) say(`listening on ${l.address.startsWith('/') ? `unix:${l.address}` : `https://${l.address}`}`);

  // logrotate's postrotate sends either signal; the reopen comes first so the reload's record is in the new file.
  process.on('SIGUSR1', () => gateway.reopenAudit());
  process.on('SIGHUP', () => {
    gateway.reopenAudit();
    void reloadFromFile(gateway, configFile, adjust);
  });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: draining connections`);
    void gateway.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return gateway;
}
