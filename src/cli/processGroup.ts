// `gatehouse serve --processes N|auto`: a primary that forks N gateway processes sharing the listeners
// (node:cluster), writes the one audit chain for all of them, keeps the sign-in hand-off codes, and fans
// signals out (reload, drain).
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { openAuditLog, type ChainedAuditLog } from '../audit/auditLog.ts';
import { defaultCheckpointFile } from '../audit/auditLogStart.ts';
import { startWitnessPusher } from '../audit/witnessPusher.ts';
import { isProcessMessage, openIpcAuditLog, writeWorkerRecords, type ParentChannel, type ProcessMessage } from '../audit/ipcAuditLog.ts';
import type { GatewayConfig } from '../config/schema.ts';
import { removeStaleSocket } from '../listener/staleSocket.ts';
import { createHandoffCodes } from '../portal/handoffCodes.ts';
import { openIpcHandoffStore, serveHandoffCodes, type HandoffChannel } from '../portal/ipcHandoffCodes.ts';
import { loadConfigOrExit, reloadFromFile, startOrExit } from './runGateway.ts';
import { say } from './say.ts';

/** `--processes` as given: a count, or `auto` (one per core available to this process). */
export function parseProcesses(value: string): number | undefined {
  if (value === 'auto') return availableParallelism();
  const n = Number(value);
  return Number.isInteger(n) && n >= 1 && n <= 256 ? n : undefined;
}

/**
 * Authorization workers per process: the configured count is for the whole gateway, shared out over
 * the processes (at least one each), so N processes do not multiply the WebAssembly memory by N.
 */
export function authzWorkersPerProcess(configured: number, processes: number): number {
  return Math.max(1, Math.round(configured / processes));
}

const PROCESS_ENV = 'GATEHOUSE_PROCESS_INDEX';
/** More unexpected exits than this within a minute: something is wrong beyond one bad request; stop. */
const MAX_RESTARTS_PER_MINUTE = 5;

/** Runs as primary or as one gateway process, whichever this process is. */
export async function runProcessGroup(configFile: string, processes: number): Promise<void> {
  if (cluster.isWorker) return runGatewayProcess(configFile, processes);
  return runPrimary(configFile, processes);
}

async function runGatewayProcess(configFile: string, processes: number): Promise<void> {
  const channel = process as unknown as ParentChannel;
  const audit = openIpcAuditLog(channel);
  const adjust = (c: GatewayConfig): GatewayConfig => ({ ...c, authz: { ...c.authz, workers: { ...c.authz.workers, count: authzWorkersPerProcess(c.authz.workers.count, processes) } } });
  const handoffs = openIpcHandoffStore(process as unknown as HandoffChannel);
  const gateway = await startOrExit(configFile, adjust, { openAudit: () => audit, handoffs });
  const send = (message: ProcessMessage) => process.send?.(message);
  send({ gatehouse: 'ready', listening: gateway.listeners.map((l) => l.address) });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void gateway.close().then(() => process.exit(0));
  };
  process.on('message', (message: unknown) => {
    if (!isProcessMessage(message)) return;
    if (message.gatehouse === 'reload') void reloadFromFile(gateway, configFile, adjust);
    else if (message.gatehouse === 'stop') stop();
    else if (message.gatehouse === 'audit-health') audit.setHealth(message.healthy, message.lastError);
  });
  // The primary sends reloads and reopens: a signal sent to the whole group must not act twice (or kill).
  process.on('SIGHUP', () => {});
  process.on('SIGUSR1', () => {});
  // SIGTERM/SIGINT to the whole group (systemd's control group, a terminal's ^C): drain like the primary asks.
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Without the primary there is no audit writer: drain and go.
  process.on('disconnect', stop);
}

/** Resolves once `w` exited and its channel was read to its end ('disconnect'): every audit record it sent has arrived. */
function workerGone(w: Worker): Promise<void> {
  return new Promise<void>((resolve) => {
    if (w.isDead()) return resolve();
    let exited = false;
    let disconnected = !w.isConnected();
    const check = () => exited && disconnected && resolve();
    w.once('exit', () => ((exited = true), check()));
    w.once('disconnect', () => ((disconnected = true), check()));
  });
}

/** Notes a restart now; true when more than MAX_RESTARTS_PER_MINUTE happened in the last minute. */
function restartedTooOften(restarts: number[]): boolean {
  const now = Date.now();
  restarts.push(now);
  while (restarts.length > 0 && (restarts[0] as number) < now - 60_000) restarts.shift();
  return restarts.length > MAX_RESTARTS_PER_MINUTE;
}

/** The primary owns the audit file: one writer keeps one hash chain that `audit verify` checks as before. */
function openSharedAudit(config: GatewayConfig, broadcast: (message: ProcessMessage) => void): ChainedAuditLog {
  const witnesses = config.audit.witnesses.length > 0 ? startWitnessPusher({ auditFile: config.audit.file, checkpointFile: config.audit.checkpointFile ?? defaultCheckpointFile(config.audit.file), witnesses: config.audit.witnesses }) : undefined;
  const audit = openAuditLog({
    ...config.audit,
    ...(witnesses && { onCheckpointDurable: witnesses.push }),
    onError: (err) => {
      process.stderr.write(`gatehouse: audit log ${config.audit.file} cannot be written (${err.message}): refusing all traffic until a write succeeds (SIGUSR1 reopens the file)\n`);
      broadcast({ gatehouse: 'audit-health', healthy: false, lastError: err.message });
    },
    onRecovered: () => {
      process.stderr.write(`gatehouse: audit log ${config.audit.file} written again: serving\n`);
      broadcast({ gatehouse: 'audit-health', healthy: true });
    },
  });
  return audit;
}

async function runPrimary(configFile: string, processes: number): Promise<void> {
  const { config } = await loadConfigOrExit(configFile);
  const audit = openSharedAudit(config, (message) => broadcast(message));
  // Sign-in hand-off codes: one holder for every process, so a code works once wherever it is redeemed.
  const handoffCodes = createHandoffCodes();
  // The cluster binds each listener once, in this process; a stale socket file is removed here, never by a gateway process.
  for (const listen of config.listen) if (listen.unix) await removeStaleSocket(listen.unix);

  const workers = new Map<number, Worker>();
  let stopping = false;
  const restarts: number[] = [];
  const broadcast = (message: ProcessMessage) => {
    for (const w of workers.values()) if (w.isConnected()) w.send(message);
  };
  const fork = (index: number): Promise<string[]> => {
    const worker = cluster.fork({ [PROCESS_ENV]: String(index) });
    workers.set(index, worker);
    writeWorkerRecords(worker, audit);
    serveHandoffCodes(worker, handoffCodes);
    let wasReady = false;
    return new Promise((ready, failed) => {
      worker.on('message', (m: unknown) => {
        if (!isProcessMessage(m) || m.gatehouse !== 'ready') return;
        wasReady = true;
        ready(m.listening);
      });
      worker.once('exit', (code, signal) => {
        failed(new Error(`gateway process ${index} exited (${signal ?? code}) before it was ready`));
        // One that never started (a port in use, a bad key) would fail again: only a running one is replaced.
        if (stopping || !wasReady || workers.get(index) !== worker) return;
        if (restartedTooOften(restarts)) {
          say(`gateway processes keep exiting (${restarts.length} in a minute): stopping`);
          void stopAll(1);
          return;
        }
        say(`gateway process ${index} (pid ${worker.process.pid}) exited (${signal ?? code}): starting another`);
        void fork(index).catch(() => undefined);
      });
    });
  };

  const stopAll = async (exitCode: number) => {
    if (stopping) return;
    stopping = true;
    const gone = [...workers.values()].map(workerGone);
    // A signal, not a message: one still starting has no handler yet and simply ends.
    for (const w of workers.values()) if (!w.isDead()) w.process.kill('SIGTERM');
    // The gateway processes' own grace is 10 s; past 30 s one is stuck.
    const kill = setTimeout(() => workers.forEach((w) => w.process.kill('SIGKILL')), 30_000);
    await Promise.all(gone);
    clearTimeout(kill);
    await audit.close();
    process.exit(exitCode);
  };

  let listening: string[];
  try {
    const all = await Promise.all(Array.from({ length: processes }, (_, i) => fork(i)));
    listening = all[0] ?? [];
  } catch (err) {
    say(`not started: ${err instanceof Error ? err.message : String(err)}`);
    await stopAll(1);
    return;
  }
  for (const address of listening) say(`listening on ${address.startsWith('/') ? `unix:${address}` : `https://${address}`}`);
  say(`${processes} gateway processes (pids ${[...workers.values()].map((w) => w.process.pid).join(', ')}), authorization workers per process: ${authzWorkersPerProcess(config.authz.workers.count, processes)}`);

  process.on('SIGUSR1', () => audit.reopen());
  process.on('SIGHUP', () => {
    audit.reopen();
    broadcast({ gatehouse: 'reload' });
  });
  const onStop = (signal: string) => () => {
    if (!stopping) say(`${signal}: draining connections in ${workers.size} processes`);
    void stopAll(0);
  };
  process.on('SIGTERM', onStop('SIGTERM'));
  process.on('SIGINT', onStop('SIGINT'));
}
