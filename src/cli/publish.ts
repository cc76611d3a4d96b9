// `gatehouse publish NAME=TARGET ...`: run next to a service (login shell, systemd --user, a batch job);
// dials out to the gateway and publishes the service under the token's user until stopped.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { addGatewayOptions, SETTINGS_HELP } from './clientOptions.ts';
import { resolveClientSettings, type TunnelFlags } from '../client/clientSettings.ts';
import { endpointsOf } from '../client/gatewayEndpoint.ts';
import { renewalFor } from '../client/tokenRenewal.ts';
import { DEFAULT_CONNECTIONS, parsePublishSpec, parseWindowSize, type PublishSpec } from '../client/publishSpec.ts';
import { EXIT } from '../client/tunnelFailure.ts';
import { sayer } from './say.ts';


interface PublishCommandOptions extends TunnelFlags {
  verbose?: boolean;
  window?: string;
  connections?: string;
}

const say = sayer('gatehouse publish: ');

function usageError(errors: string[]): never {
  for (const e of errors) say(`error: ${e}`);
  process.exit(EXIT.usage);
}

export function registerPublish(program: Command): void {
  const command = program
    .command('publish')
    .description('publish local services (UNIX sockets or loopback ports) through the gateway under your own name')
    .argument('<NAME=TARGET...>', 'NAME=unix:PATH, NAME=PORT or NAME=127.0.0.1:PORT; NAME/tcp=… for a raw TCP service (not HTTP); NAME=udp:[HOST:]PORT for a UDP service')
    .option('-v, --verbose', 'log every stream: open, close, bytes each way')
    .option('--window <size>', 'largest receive window of one stream (e.g. 16M): windows grow to the path up to this; it is also what a service that stops reading may leave unread here', '16M')
    .option('--connections <k>', 'in a cluster (gateways that relay to each other), connections to distinct instances to keep through one balancer name', String(DEFAULT_CONNECTIONS));
  addGatewayOptions(command, { severalGateways: true })
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.usage))
    .addHelpText(
      'after',
      `
${SETTINGS_HELP}

The services are published under the user named in your token, never under a name you choose:
alice's "jupyter" is reached as /~alice/jupyter/ or with "gatehouse tunnel -L 8888:jupyter.alice"
(as the gateway's routes say). The gateway can only ask for the services named here; the publisher
connects to nothing else. It reconnects after a gateway restart or a network loss.
A service that speaks raw TCP rather than HTTP (a database, ssh) is given as NAME/tcp=TARGET: the
portal then shows the "gatehouse tunnel -L" command for it instead of a web link.
A UDP service (a DNS server, a detector stream's receiver) is given as NAME=udp:PORT or
NAME=udp:127.0.0.1:PORT: udp routes reach it ("gatehouse tunnel -L udp:..."), each flow over its own
local UDP socket to the service.

Several gateway instances (behind a load balancer): give each one, with --gateway repeated or as a
comma list (also in GATEHOUSE_GATEWAY and "gateway:"), or one name that resolves to all of them; the
publisher keeps one connection to each instance (each address of a name, looked up again every
minute), each reconnecting on its own, so a request reaches the service whichever instance serves it.
Gateways in a cluster (they name their instance and relay requests to each other) need fewer: through
the balancer's name alone the publisher keeps --connections (2) connections to distinct instances,
reconnecting through the balancer until it lands on an instance it does not hold yet.

Examples:
  gatehouse publish jupyter=unix:~/.gatehouse/jupyter.sock
  gatehouse publish api=127.0.0.1:8000 db/tcp=unix:/run/user/1000/db.sock
  gatehouse publish stream=udp:127.0.0.1:9000
  gatehouse publish --gateway https://gw1.example.org --gateway https://gw2.example.org jupyter=unix:~/j.sock

Exit codes: 0 stopped by a signal, 2 bad options or files, 4 refused by the gateway (400/401/403).`,
    )
    .action(async (args: string[], opts: PublishCommandOptions) => {
      const specs: PublishSpec[] = [];
      const errors: string[] = [];
      for (const text of args) {
        const parsed = parsePublishSpec(text, process.env.HOME);
        if (parsed.ok) specs.push(parsed.spec);
        else errors.push(parsed.error);
      }
      const names = specs.map((s) => s.service);
      if (new Set(names).size !== names.length) errors.push('a service name is given twice');
      const settings = resolveClientSettings(opts, process.env, { severalGateways: true });
      if (!settings.ok) errors.push(...settings.errors);
      const window = parseWindowSize(opts.window);
      if (!window.ok) errors.push(window.error);
      const connections = Number(opts.connections ?? DEFAULT_CONNECTIONS);
      if (!Number.isInteger(connections) || connections < 1 || connections > 16) errors.push(`--connections ${JSON.stringify(opts.connections)}: a whole number from 1 to 16`);
      if (errors.length > 0 || !settings.ok || !window.ok) usageError(errors);
      for (const w of settings.warnings) say(w);
      for (const spec of specs) {
        if (spec.target.kind === 'unix' && !existsSync(spec.target.path)) say(`warning: ${spec.target.path} does not exist yet; streams for ${spec.service} fail until the service listens there`);
      }
      // Loaded here, not at startup: node:http2 and the publisher are not needed by `gatehouse tunnel`.
      const { runPublisherFleet } = await import('../client/publisherFleet.ts');
      const keeper = renewalFor(settings.settings, say);
      const publisher = runPublisherFleet({ endpoints: endpointsOf(settings.settings, keeper?.holder).map((e) => ({ ...e, receiveWindow: window.bytes })), specs, say, verbose: opts.verbose === true, connections });
      // The gateway ends a registration whose token expired: each publisher registers again with the renewed one.
      keeper?.onRenewed(() => publisher.tokenRenewed());
      let signals = 0;
      const stop = (signal: NodeJS.Signals) => {
        signals += 1;
        if (signals > 1) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
        say(`${signal}: withdrawing the services`);
        publisher.stop();
        setTimeout(() => process.exit(EXIT.ok), 2_000).unref();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      process.exit(await publisher.done);
    });
}
