// `gatehouse tunnel`: the ssh -L replacement. Local ports or private UNIX sockets (-L) or stdin/stdout
// (--stdio) reach a route through the gateway over CONNECT or WebSocket, with certificate + token.
import type { Command } from 'commander';
import { choiceOption } from './choiceOption.ts';
import { addGatewayOptions, SETTINGS_HELP } from './clientOptions.ts';
import { expandPath } from '../client/clientConfigFile.ts';
import { parseForwardSpec, type ForwardSpec } from '../client/forwardSpec.ts';
import { resolveClientSettings, type TunnelFlags } from '../client/clientSettings.ts';
import { endpointOf } from '../client/gatewayEndpoint.ts';
import { openTunnel, preflight } from '../client/tunnelDialer.ts';
import { renewalFor } from '../client/tokenRenewal.ts';
import { startForward, type LocalForward } from '../client/localListeners.ts';
import { openUdpFlow } from '../client/udpDialer.ts';
import { startUdpForward } from '../client/udpForward.ts';
import { runStdioTunnel } from '../client/stdioTunnel.ts';
import { stdoutErrorsHandledByCommand } from './closedPipe.ts';
import { EXIT, describeFailure, exitCodeFor } from '../client/tunnelFailure.ts';
import { validRoute } from '../token/names.ts';
import { sayer } from './say.ts';

interface TunnelCommandOptions extends TunnelFlags {
  local?: string[];
  stdio?: string;
  verbose?: boolean;
  graceMs?: string;
  udpIdleSeconds?: string;
}

const say = sayer('');
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];
const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

function usageError(errors: string[]): never {
  for (const e of errors) say(`error: ${e}`);
  process.exit(EXIT.usage);
}

/** HTTP/2 (extended CONNECT) carries UDP flows only: a TCP tunnel asked over it is a usage error. */
const HTTP2_UDP_ONLY = '--transport http2 carries UDP flows only (-L udp:...); TCP tunnels and --stdio use connect or websocket';

async function runStdio(route: string, opts: TunnelCommandOptions): Promise<never> {
  const settings = resolveClientSettings(opts);
  if (!settings.ok) usageError(settings.errors);
  if (settings.settings.transport === 'http2') usageError([HTTP2_UDP_ONLY]);
  for (const w of settings.warnings) say(w);
  const endpoint = endpointOf(settings.settings);
  let abort: (() => void) | undefined;
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      abort?.();
      process.exit(128 + (signalNumbers[signal] ?? 0));
    });
  }
  stdoutErrorsHandledByCommand();
  const code = await runStdioTunnel(route, {
    open: (r) => openTunnel(endpoint, settings.settings.transport, r),
    gateway: endpoint.label,
    say,
    onOpen: (a) => (abort = a),
  });
  process.exit(code);
}

async function runListeners(specs: ForwardSpec[], opts: TunnelCommandOptions): Promise<void> {
  const settings = resolveClientSettings(opts);
  if (!settings.ok) usageError(settings.errors);
  if (settings.settings.transport === 'http2' && specs.some((spec) => spec.kind !== 'udp')) usageError([HTTP2_UDP_ONLY]);
  for (const w of settings.warnings) say(w);
  // Each new tunnel sends the newest token: a long-running tunnel outlives a token from `gatehouse login`.
  const endpoint = endpointOf(settings.settings, renewalFor(settings.settings, say)?.holder);
  const checked = await preflight(endpoint);
  if (!checked.ok) {
    say(`error: ${describeFailure(checked.failure, endpoint.label, specs[0]?.route ?? '')}`);
    process.exit(exitCodeFor(checked.failure));
  }
  const forwards: LocalForward[] = [];
  const stopAll = () => Promise.all(forwards.map((f) => f.stopListening()));
  for (const spec of specs) {
    const common = { gateway: endpoint.label, transport: settings.settings.transport, say, verbose: opts.verbose === true };
    const started =
      spec.kind === 'udp' || spec.kind === 'unixgram'
        ? await startUdpForward(spec, { ...common, open: (route) => openUdpFlow(endpoint, settings.settings.transport, route), idleTimeoutMs: Number(opts.udpIdleSeconds ?? 120) * 1000 })
        : await startForward(spec, { ...common, open: (route) => openTunnel(endpoint, settings.settings.transport, route, 'relay') });
    if (!started.ok) {
      say(`error: ${started.error}`);
      await stopAll();
      process.exit(EXIT.usage);
    }
    forwards.push(started.forward);
  }
  const graceMs = Number(opts.graceMs ?? 2000);
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal: no more waiting.
      process.exit(128 + (signalNumbers[signal] ?? 0));
    }
    stopping = true;
    say(`${signal}: no longer accepting; letting open tunnels finish (up to ${graceMs / 1000} s)`);
    void (async () => {
      await stopAll();
      await Promise.all(forwards.map((f) => f.drain(graceMs)));
      process.exit(EXIT.ok);
    })();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

export function registerTunnel(program: Command): void {
  const command = program
    .command('tunnel')
    .description('reach a route through the gateway from local ports, private UNIX sockets (-L) or stdin/stdout (--stdio)')
    .option('-L, --local <spec>', 'forward [ADDR:]PORT:ROUTE, unix:PATH:ROUTE, udp:[ADDR:]PORT:ROUTE or unixgram:PATH:ROUTE (repeatable; ADDR defaults to 127.0.0.1)', collect)
    .option('--stdio <route>', 'one tunnel over stdin/stdout, e.g. as ssh ProxyCommand')
    .addOption(choiceOption('--transport <kind>', 'connect (HTTP CONNECT, default), websocket, or http2 (UDP flows only: RFC 9298 over HTTP/2) (env GATEHOUSE_TRANSPORT)', ['connect', 'websocket', 'http2']));
  addGatewayOptions(command)
    .option('--grace-ms <ms>', 'on SIGINT/SIGTERM, how long open tunnels may finish', '2000')
    .option('--udp-idle-seconds <s>', '-L udp:/unixgram: close a local peer\'s flow after this long without a datagram either way', '120')
    .option('-v, --verbose', 'log every connection: open, close, bytes each way')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage))
    .addHelpText(
      'after',
      `
${SETTINGS_HELP}

-L unix:PATH:ROUTE creates PATH with mode 0600. Its directory must belong to you and be closed to
others (mode 0700); a missing directory is created with mode 0700, any other is refused. A stale
socket at PATH is replaced; the socket is removed on exit. A TCP port (-L 8888:ROUTE) can be used
by every local user of this machine: prefer a UNIX socket on shared machines.
-L udp:[ADDR:]PORT:ROUTE carries UDP datagrams (RFC 9298 CONNECT-UDP over HTTP/1.1, or over HTTP/2
with --transport http2, or the WebSocket transport): each local peer address gets its own flow, closed
after --udp-idle-seconds without a datagram. With http2 the flows share one connection to the gateway.
-L unixgram:PATH:ROUTE does the same from a local datagram UNIX socket (mode 0600, as unix:): each
sender's bound path gets its own flow; senders with no bound path (logger, a one-shot sendto) share
one flow that carries their datagrams to the route and drops its replies.

Examples:
  gatehouse tunnel --gateway https://gw.example.org:8443 -L unix:$HOME/.gatehouse/jupyter.sock:jupyter
  gatehouse tunnel --gateway https://gw.example.org:8443 -L 8888:jupyter
  gatehouse tunnel --gateway https://gw.example.org:8443 -L udp:5353:dns
  ssh -o ProxyCommand='gatehouse tunnel --stdio sshd' user@login-node

Exit codes: 0 done, 1 tunnel broke, 2 bad options or files, 3 gateway unreachable or TLS failed,
4 refused by the gateway (401/403/404), 5 service behind the route unavailable (502).`,
    )
    .action(async (opts: TunnelCommandOptions) => {
      const locals = opts.local ?? [];
      if (opts.stdio !== undefined && locals.length > 0) usageError(['give either -L specs or --stdio ROUTE, not both']);
      if (opts.stdio === undefined && locals.length === 0) usageError(['nothing to do: give -L [ADDR:]PORT:ROUTE, -L unix:PATH:ROUTE or --stdio ROUTE']);
      if (opts.graceMs !== undefined && !/^\d+$/.test(opts.graceMs)) usageError([`--grace-ms ${JSON.stringify(opts.graceMs)}: expected milliseconds`]);
      if (opts.udpIdleSeconds !== undefined && !/^\d+(\.\d+)?$/.test(opts.udpIdleSeconds)) usageError([`--udp-idle-seconds ${JSON.stringify(opts.udpIdleSeconds)}: expected seconds`]);
      if (opts.stdio !== undefined) {
        const route = validRoute(opts.stdio);
        if (!route.ok) usageError([`--stdio: ${route.error.message}`]);
        await runStdio(opts.stdio, opts);
        return;
      }
      const specs: ForwardSpec[] = [];
      const errors: string[] = [];
      for (const text of locals) {
        const parsed = parseForwardSpec(text);
        // `unix:~/x.sock:route` reaches us unexpanded: the shell expands ~ only at the start of a word.
        if (parsed.ok) specs.push(parsed.spec.kind === 'unix' || parsed.spec.kind === 'unixgram' ? { ...parsed.spec, path: expandPath(parsed.spec.path) } : parsed.spec);
        else errors.push(parsed.error);
      }
      if (errors.length > 0) usageError(errors);
      await runListeners(specs, opts);
    });
}
