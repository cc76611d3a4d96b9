// A `gatehouse audit witness` child process for tests: its directory (own key, mTLS from a test PKI,
// a config following one log), started on a port of its own and stopped.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAuditKeyPair } from '../../src/audit/auditCheckpoint.ts';
import { auditKeys } from './auditFixtures.ts';
import { cli } from './gatewayHarness.ts';
import { parseCheckpointNote } from '../../src/audit/signedNote.ts';
import type { TestClientCertificate, TestPki } from './pki.ts';

/** Starts the witness; resolves with its port once it listens. */
export function startWitnessProcess(config: string): Promise<{ proc: ChildProcess; port: number; stderr: () => string }> {
  const proc = spawn(process.execPath, [cli, 'audit', 'witness', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((ok, fail) => {
    proc.stderr?.on('data', () => {
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (m) ok({ proc, port: Number(m[1]), stderr: () => err });
    });
    proc.once('exit', (code) => fail(new Error(`witness exited with ${code}:\n${err}`)));
  });
}

/** A witness directory: its key, mTLS material from `pki`, a config following ORIGIN for `clients`. */
export function witnessSetup(pki: TestPki, origin: string, clients: string[], port = 0): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-witness-'));
  const written = writeAuditKeyPair(join(dir, 'witness'), false);
  if (!written.ok) throw new Error(written.error.message);
  const config = join(dir, 'witness.yaml');
  writeFileSync(config, `name: witness.test/w1\nlisten: 127.0.0.1:${port}\nkey: witness.key\nstateDir: state\ntls:\n  cert: ${pki.serverCertPath}\n  key: ${pki.serverKeyPath}\n  clientCa: ${pki.caCertPath}\nlogs:\n  - origin: ${origin}\n    key: ${auditKeys}.pub\n    clients: [${clients.map((c) => JSON.stringify(c)).join(', ')}]\n`);
  return { dir, config };
}

export const stopProc = (proc: ChildProcess) => new Promise<void>((ok) => (proc.exitCode !== null ? ok() : (proc.once('exit', () => ok()), proc.kill('SIGTERM'))));


/** audit.origin and audit.witnesses for one witness named `witness`, then a metrics listener (for /readyz). */
export function witnessLines(origin: string, witness: string, port: number, vkey: string, pki: TestPki, cert: TestClientCertificate): string {
  return `  origin: ${origin}\n  witnesses:\n    - url: https://localhost:${port}\n      name: ${witness}\n      vkey: ${vkey}\n      ca: ${pki.caCertPath}\n      cert: ${cert.certPath}\n      key: ${cert.keyPath}\n  witnessMaxAgeSeconds: 3\nmetrics:\n  listen: 127.0.0.1:0\n`;
}

/** The tree size of a checkpoint note file, -1 when absent or unreadable. */
export const checkpointSize = (file: string): number => {
  try {
    const cp = parseCheckpointNote(readFileSync(file, 'utf8'));
    return cp.ok ? cp.value.size : -1;
  } catch {
    return -1;
  }
};

/** Polls `probe` until it returns a value. */
export async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
