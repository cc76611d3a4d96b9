// Starts the test services of a published-service test in their own process (so they can run as another
// OS user): `node runServices.ts DIR` listens on DIR/web.sock (HTTP + WebSocket echo) and DIR/echo.sock.
import { join } from 'node:path';
import { echoService, httpAndWebSocketService } from './publishPeers.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: runServices.ts DIR');
await httpAndWebSocketService(join(dir, 'web.sock'));
await echoService(join(dir, 'echo.sock'));
process.stdout.write('ready\n');
