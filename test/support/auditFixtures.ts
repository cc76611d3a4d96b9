// Shared pieces of the audit tests: a signing key pair for the run, the audit config lines that use
// it, the `gatehouse` CLI as a child process (and `serve` again), and an HTTP + WebSocket echo upstream.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { WebSocketServer } from 'ws';
import { writeAuditKeyPair } from '../../src/audit/auditCheckpoint.ts';
import { cli, runGatehouse, type Harness } from './gatewayHarness.ts';

/** `<auditKeys>.key` signs, `<auditKeys>.pub` verifies. */
export const auditKeys = join(mkdtempSync(join(tmpdir(), 'gatehouse-audit-keys-')), 'audit-signing');
const written = writeAuditKeyPair(auditKeys, false);
if (!written.ok) throw new Error(written.error.message);

/** Lines under `audit:` after `file:` (the harness writes `file:` first, then `extraTop`). */
export const signedAudit = (records = 7): string => `  signingKey: ${auditKeys}.key\n  checkpoint:\n    records: ${records}\n    seconds: 60\n`;

export const runCli = (args: string[]) => runGatehouse(args);

/** Answers HTTP with `hello` and echoes WebSocket messages. */
export async function webUpstream(path: string): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  const server = createServer((_req, res) => res.writeHead(200).end('hello\n'));
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  wss.on('connection', (ws) => ws.on('message', (d, binary) => ws.send(d, { binary })));
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
  return server;
}

/** `gatehouse serve` again in the harness's directory: its stderr once it listens or exits. */
export function serveAgain(h: Harness): Promise<{ code: number | null; stderr: string; stop: () => Promise<void> }> {
  const proc = spawn(process.execPath, [cli, 'serve', '--config', join(h.dir, 'routes.yaml')], { cwd: h.dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const stop = () => new Promise<void>((resolve) => (proc.exitCode !== null ? resolve() : (proc.once('exit', () => resolve()), proc.kill('SIGTERM'))));
  return new Promise((resolve) => {
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/listening on https/.test(stderr)) resolve({ code: null, stderr, stop });
    });
    proc.once('exit', (code) => resolve({ code, stderr, stop }));
  });
}
