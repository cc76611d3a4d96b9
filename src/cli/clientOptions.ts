// The options every client command (`tunnel`, `publish`) takes to reach the gateway, defined once so the
// two stay the same: flags, then environment, then client.yaml (see src/client/clientSettings.ts).
import type { Command } from 'commander';

/** Repeated `--gateway` flags, joined as a comma list (how the environment and the file give several). */
function joinGateways(value: string, previous: string | undefined): string {
  return previous === undefined ? value : `${previous},${value}`;
}

export function addGatewayOptions(command: Command, options: { severalGateways?: boolean } = {}): Command {
  const gateway = options.severalGateways
    ? command.option('--gateway <url>', 'gateway address, https://HOST[:PORT]; repeat it or give a comma list to connect to every instance (env GATEHOUSE_GATEWAY)', joinGateways)
    : command.option('--gateway <url>', 'gateway address, https://HOST[:PORT] (env GATEHOUSE_GATEWAY)');
  return gateway
    .option('--cert <file>', 'client certificate, PEM (env GATEHOUSE_CERT)')
    .option('--key <file>', 'client private key, PEM (env GATEHOUSE_KEY)')
    .option('--ca <file>', 'CA that signed the gateway certificate (env GATEHOUSE_CA; default: system CAs)')
    .option('--token-file <file>', 'file holding the token (env GATEHOUSE_TOKEN_FILE; default $XDG_CONFIG_HOME/gatehouse/token or ~/.config/gatehouse/token, where gatehouse login saves it)')
    .option('--config <file>', 'client config file (default ~/.config/gatehouse/client.yaml)');
}

export const SETTINGS_HELP = `Settings come from flags, then environment, then the config file (YAML keys: gateway, cert, key,
ca, tokenFile, transport; relative paths are relative to the file). The token is read from a file
(or GATEHOUSE_TOKEN), never from the command line, where other users could see it; a token file others
can read is refused. A token from "gatehouse login" is renewed before it expires.`;
