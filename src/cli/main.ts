// The `gatehouse` command line: one program, one module per command group.
// Each module registers its commands on the shared commander program.
import { Command } from 'commander';
import { exitQuietlyOnClosedPipe } from './closedPipe.ts';
import { exitCodeOf } from './usageExit.ts';
import { gatehouseVersion } from './version.ts';
import { registerServe } from './serve.ts';
import { registerDemo } from './demo.ts';
import { registerCheck } from './check.ts';
import { registerPki } from './pki.ts';
import { registerToken } from './token.ts';
import { registerAuthz } from './authz.ts';
import { registerTunnel } from './tunnel.ts';
import { registerAudit } from './audit.ts';
import { registerPublish } from './publish.ts';
import { registerLogin, registerLogout } from './login.ts';
import { registerCluster } from './cluster.ts';

exitQuietlyOnClosedPipe();

const program = new Command('gatehouse')
  .description('Policy-enforcing reverse proxy and tunnel gateway (mTLS + Biscuit + audit)')
  .version(gatehouseVersion())
  .showHelpAfterError()
  .exitOverride((err) => process.exit(exitCodeOf(err, process.argv)));

registerServe(program);
registerDemo(program);
registerCheck(program);
registerPki(program);
registerToken(program);
registerAuthz(program);
registerTunnel(program);
registerAudit(program);
registerPublish(program);
registerLogin(program);
registerLogout(program);
registerCluster(program);

await program.parseAsync(process.argv);
