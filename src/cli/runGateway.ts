// Runs the gateway for `gatehouse serve` and `gatehouse demo`: load and validate the config, start,
// reopen the audit file on SIGUSR1 and SIGHUP, reload on SIGHUP (keeping the running config on
// errors), drain on SIGTERM/SIGINT.
import { formatConfigError, loadConfig } from '../config/loadConfig.ts';
import { startGateway, type Gateway } from '../gateway/gateway.ts';
import { say } from './say.ts';

/** Loads `configFile` and runs the gateway until a signal stops it. Exits the process on fatal errors. */
export async function runGateway(configFile: string): Promise<Gateway> {
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) {
    for (const e of loaded.errors) process.stderr.write(formatConfigError(e) + '\n');
    say(`not started: ${loaded.errors.length} configuration error(s)`);
    process.exit(1);
  }
  let gateway: Gateway;
  try {
    gateway = await startGateway(loaded.config, loaded.file);
  } catch (err) {
    say(`not started: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  for (const l of gateway.listeners) say(`listening on ${l.address.startsWith('/') ? `unix:${l.address}` : `https://${l.address}`}`);

  // logrotate's postrotate sends either signal; the reopen comes first so the reload's record is in the new file.
  process.on('SIGUSR1', () => gateway.reopenAudit());
  process.on('SIGHUP', () => {
    gateway.reopenAudit();
    void (async () => {
      const next = await loadConfig(configFile);
      if (!next.ok) {
        for (const e of next.errors) process.stderr.write(formatConfigError(e) + '\n');
        gateway.audit.write({ event: 'config.reload', decision: 'deny', reason: `kept the running config: ${next.errors.map(formatConfigError).join('; ')}` });
        say('reload refused; still running the previous configuration');
        return;
      }
      const result = await gateway.reload(next.config, next.file);
      say(result.ok ? 'configuration reloaded' : `reload refused (${result.reason}); still running the previous configuration`);
      await gateway.reloadRevocations();
    })();
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
