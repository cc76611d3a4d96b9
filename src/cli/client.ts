// The laptop client's command line: `gatehouse tunnel` (and the user's other client-side commands)
// without the gateway, the token tooling or the development CA, built into dist/client/ by build/client.ts.
import { Command } from 'commander';
import { exitQuietlyOnClosedPipe } from './closedPipe.ts';
import { exitCodeOf } from './usageExit.ts';
import { gatehouseVersion } from './version.ts';
import { registerPublish } from './publish.ts';
import { registerLogin, registerLogout } from './login.ts';
import { registerTunnel } from './tunnel.ts';

exitQuietlyOnClosedPipe();

const program = new Command('gatehouse')
  .description('gatehouse client: reach routes through a gatehouse gateway (tunnel), publish your services (publish), get a token (login)')
  .version(gatehouseVersion())
  .showHelpAfterError()
  .exitOverride((err) => process.exit(exitCodeOf(err, process.argv)));

registerTunnel(program);
registerPublish(program);
registerLogin(program);
registerLogout(program);

// No top-level await: the same entry is bundled as CommonJS for the single binary.
void program.parseAsync(process.argv);
