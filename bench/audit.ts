// Benchmark of the audit trail (not a test): writes N realistic records through the gateway's own
// chained, signing audit log, then times `gatehouse audit verify`, `audit prove` and `audit query` over them (peak RSS from /proc).
// Usage: npm run bench:audit [-- --records 1000000 --rotate 250000]
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeAuditKeyPair } from '../src/audit/auditCheckpoint.ts';
import { openAuditLog } from '../src/audit/auditLog.ts';
import type { AuditRecord } from '../src/audit/auditRecord.ts';

const { values: args } = parseArgs({ options: { records: { type: 'string', default: '1000000' }, rotate: { type: 'string', default: '250000' }, keep: { type: 'boolean', default: false } } });
const total = Number(args.records);
const rotateEvery = Number(args.rotate);
const dir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-audit-'));
const keys = path.join(dir, 'audit-signing');
const cli = path.join(import.meta.dirname, '..', 'bin', 'gatehouse.js');
const file = path.join(dir, 'audit.log');

function record(i: number): AuditRecord {
  const user = `user${i % 50}`;
  const client = { cn: user, subject: `CN=${user}`, issuer: 'CN=site CA', serial: (1000 + (i % 50)).toString(16), fingerprint: `sha256:${(i % 50).toString(16).padStart(64, '0')}` };
  const base = { conn: `c${i >> 3}`, req: `c${i >> 3}.${i & 7}`, source: `10.0.${(i >> 8) & 255}.${i & 255}:${40000 + (i % 20000)}`, client, token: { user, groups: ['hpc'], revocationIds: ['9f'.repeat(32)] }, route: `route${i % 7}`, upstream: 'unix:/run/svc.sock' };
  if (i % 20 === 0) return { ...base, event: 'tunnel.close', protocol: 'tcp', bytesIn: 4096 + i, bytesOut: 65536 + i, durationMs: 1000 + (i % 60_000) };
  const deny = i % 10 === 3;
  return { ...base, event: 'request', protocol: 'http', method: 'GET', path: `/svc/item/${i}`, decision: deny ? 'deny' : 'allow', status: deny ? 403 : 200, ...(deny && { reason: 'check failed: check if method("GET")' }), bytesIn: 0, bytesOut: 512, durationMs: 1.25 };
}

async function write(): Promise<string[]> {
  const rotated: string[] = [];
  const audit = openAuditLog({ file, signingKey: `${keys}.key`, checkpoint: { records: 1000, seconds: 60 } });
  const started = performance.now();
  for (let i = 0; i < total; i += 1) {
    audit.write(record(i));
    // Yield now and then so the asynchronous writer drains, as it does between requests in the gateway.
    if (i % 1000 === 999) while (audit.unwrittenBytes > 8 * 2 ** 20) await new Promise((r) => setTimeout(r, 1));
    if (rotateEvery > 0 && i % rotateEvery === rotateEvery - 1 && i < total - 1) {
      const target = `${file}.${rotated.length + 1}`;
      while (!existsSync(file)) await new Promise((r) => setTimeout(r, 1));
      renameSync(file, target);
      rotated.push(target);
      audit.reopen();
    }
  }
  await audit.close();
  const seconds = (performance.now() - started) / 1000;
  const files = [...rotated, file];
  const bytes = files.reduce((n, f) => n + statSync(f).size, 0);
  console.log(`write:  ${total} records (+ checkpoints) in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} records/s, ${(bytes / 2 ** 20).toFixed(0)} MiB in ${files.length} files`);
  return files;
}

/** Runs the CLI, returns wall time and the peak RSS seen in /proc (VmHWM). */
function timed(label: string, cliArgs: string[]): Promise<void> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(process.execPath, [cli, ...cliArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let peakKb = 0;
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const poll = setInterval(() => {
      try {
        peakKb = Math.max(peakKb, Number(/^VmHWM:\s+(\d+)/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0));
      } catch {
        // exited between two polls
      }
    }, 20);
    child.on('exit', (code) => {
      clearInterval(poll);
      const seconds = (performance.now() - started) / 1000;
      console.log(`${label}: ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} records/s, peak RSS ${(peakKb / 1024).toFixed(0)} MiB, exit ${code}`);
      console.log(out.split('\n').slice(0, 4).map((l) => `    ${l}`).join('\n'));
      resolve();
    });
  });
}

const made = writeAuditKeyPair(keys, false);
if (!made.ok) throw new Error(made.error.message);
const files = await write();
await timed('verify', ['audit', 'verify', '--key', `${keys}.pub`, ...files]);
await timed('prove (one record, inclusion proof)', ['audit', 'prove', '--seq', String(Math.ceil(total / 2)), ...files]);
await timed('query summary', ['audit', 'query', '--format', 'summary', ...files]);
await timed('query one user, json', ['audit', 'query', '--user', 'user7', '--decision', 'deny', '--format', 'json', ...files]);
if (!args.keep) rmSync(dir, { recursive: true, force: true });
else console.log(`kept ${dir}`);
