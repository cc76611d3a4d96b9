// An end-to-end test bed: a temp dir with a dev PKI, a token root key, a revocation list and a
// routes.yaml, a real `gatehouse serve` child process, real curl, and the audit log it wrote.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import type { AuditRecord } from '../../src/audit/auditRecord.ts';
import { makeTestPki, type TestClientCertificate, type TestPki } from './pki.ts';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
/**
 * The command the tests run: the sources on this Node by default. GATEHOUSE_TEST_CLI and GATEHOUSE_TEST_NODE
 * point the end-to-end tests at the built package on another Node (docs/development.md).
 */
export const cli = process.env.GATEHOUSE_TEST_CLI ?? join(repoRoot, 'bin', 'gatehouse.js');
/** The Node (or a wrapper with its flags) that runs `cli`. */
export const cliNode = process.env.GATEHOUSE_TEST_NODE ?? process.execPath;

export interface Harness {
  dir: string;
  pki: TestPki;
  port: number;
  base: string;
  rootKey: { privateKey: string; publicKey: string };
  revocationList: string;
  auditFile: string;
  proc: ChildProcess;
  stderr(): string;
  audit(): Array<AuditRecord & { time: string }>;
  /** Waits until the audit log has a record matching `pred` (records are written asynchronously). */
  waitForAudit(pred: (r: AuditRecord) => boolean, timeoutMs?: number): Promise<AuditRecord & { time: string }>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface HarnessOptions {
  /** routes: YAML list items (already indented by 2) placed under `routes:`. */
  routes: string;
  extraTop?: string;
  /** More `listen:` entries (YAML list items indented by 2), besides the loopback TCP port. */
  extraListen?: string;
  /** audit.file in routes.yaml (default audit/audit.log). */
  auditFile?: string;
  /** More keys under `authz:` (lines indented by 2), e.g. externalKeys or cache settings. */
  authzExtra?: string;
  /** More keys under `audit:` (lines indented by 2), e.g. origin or checkpoint settings. */
  auditExtra?: string;
  /** More arguments to `gatehouse serve`, e.g. `['--processes', '2']`. */
  serveArgs?: string[];
  /** More names in the server certificate (besides localhost and the loopback addresses), e.g. `*.apps.test`. */
  serverNames?: string[];
  /** The token root key pair, to share one between several gateways (default: a new one). */
  rootKey?: { privateKey: string; publicKey: string };
  /** Another gateway's PKI (its CA, server certificate and key), to share one between several gateways (default: a new one). */
  pki?: TestPki;
}

export function makeRootKey(): { privateKey: string; publicKey: string } {
  const kp = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);
  return { privateKey: kp.getPrivateKey().toString(), publicKey: kp.getPublicKey().toString() };
}

/** Mints a token straight from Datalog: tests state exactly what the token says. */
export function mintRaw(privateKey: string, code: string): string {
  const builder = new biscuit.BiscuitBuilder();
  builder.addCode(code);
  return builder.build(biscuit.PrivateKey.fromString(privateKey)).toBase64();
}

export function inOneHour(): string {
  return new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The routes.yaml of a test gateway: dev PKI and token files under certs/, loopback port 0. */
export function gatewayConfig(opts: HarnessOptions): string {
  return `listen:
  - tcp: 127.0.0.1:0
${opts.extraListen ?? ''}tls:
  cert: certs/server.crt
  key: certs/server.key
  clientCa: certs/ca.crt
authz:
  rootKey: certs/token-root.pub
  revocationList: certs/revoked.txt
${opts.authzExtra ?? ''}audit:
  file: ${opts.auditFile ?? 'audit/audit.log'}
${opts.auditExtra ?? ''}${opts.extraTop ?? ''}routes:
${opts.routes}`;
}

/** `pki`'s CA, server certificate and key copied to `dir`; client certificates stay `pki`'s. */
function sharePki(pki: TestPki, dir: string): TestPki {
  mkdirSync(dir, { recursive: true });
  for (const file of ['ca.crt', 'server.crt', 'server.key']) copyFileSync(join(pki.dir, file), join(dir, file));
  return pki;
}

export async function startHarness(opts: HarnessOptions): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-'));
  const pki = opts.pki ? sharePki(opts.pki, join(dir, 'certs')) : await makeTestPki(join(dir, 'certs'), opts.serverNames);
  const rootKey = opts.rootKey ?? makeRootKey();
  writeFileSync(join(dir, 'certs', 'token-root.pub'), rootKey.publicKey + '\n');
  const revocationList = join(dir, 'certs', 'revoked.txt');
  writeFileSync(revocationList, '# revoked token ids\n');
  const auditFile = join(dir, 'audit', 'audit.log');
  writeFileSync(join(dir, 'routes.yaml'), gatewayConfig(opts));
  const proc = spawn(cliNode, [cli, 'serve', '--config', join(dir, 'routes.yaml'), ...(opts.serveArgs ?? [])], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`gateway did not start:\n${err}`)), 20_000);
    proc.stderr?.on('data', () => {
      const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        ok(Number(m[1]));
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`gateway exited with ${code}:\n${err}`));
    });
  });
  // Only complete lines: the gateway may be in the middle of writing the last one.
  const audit = () => {
    if (!existsSync(auditFile)) return [];
    const text = readFileSync(auditFile, 'utf8');
    return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord & { time: string });
  };
  return {
    dir,
    pki,
    port,
    base: `https://localhost:${port}`,
    rootKey,
    revocationList,
    auditFile,
    proc,
    stderr: () => err,
    audit,
    async waitForAudit(pred, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const hit = audit().find(pred);
        if (hit) return hit;
        if (Date.now() > until) throw new Error(`no matching audit record; have:\n${audit().map((r) => JSON.stringify(r)).join('\n')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop(signal = 'SIGTERM') {
      // A child ended by a signal has signalCode set and exitCode null: it will not exit again.
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
      return new Promise((ok) => {
        proc.once('exit', (code) => ok(code));
        proc.kill(signal);
      });
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the `gatehouse` command from the sources in `cwd`, with `input` on its stdin if given. */
export function runGatehouse(args: string[], options: { cwd?: string; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(cliNode, [cli, ...args], { maxBuffer: 64 << 20, ...(options.cwd !== undefined && { cwd: options.cwd }) }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}


/** Runs the `gatehouse` command and returns its stdout; throws with its stderr when it fails. */
export async function runGatehouseOk(args: string[], options: { cwd?: string; input?: string } = {}): Promise<string> {
  const result = await runGatehouse(args, options);
  if (result.code !== 0) throw new Error(`gatehouse ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

export interface CurlResult {
  status: number;
  body: string;
  stderr: string;
  exitCode: number;
}

/** Real curl. `client` presents a certificate; `token` becomes `Authorization: Bearer`. */
export function curl(h: Harness, path: string, opts: { client?: TestClientCertificate; token?: string; args?: string[]; ca?: string } = {}): Promise<CurlResult> {
  const args = ['-sS', '--max-time', '10', '--cacert', opts.ca ?? h.pki.caCertPath, '-o', '-', '-w', '\n%{http_code}'];
  if (opts.client) args.push('--cert', opts.client.certPath, '--key', opts.client.keyPath);
  if (opts.token) args.push('-H', `Authorization: Bearer ${opts.token}`);
  args.push(...(opts.args ?? []), '--path-as-is', `${h.base}${path}`);
  return new Promise((ok) => {
    execFile('curl', args, { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const cut = stdout.lastIndexOf('\n');
      ok({ status: Number(stdout.slice(cut + 1)) || 0, body: stdout.slice(0, cut), stderr, exitCode: error ? Number((error as { code?: number }).code ?? 1) : 0 });
    });
  });
}

export interface CurlReply {
  status: number;
  /** Every response header, lower-case names, values in order. */
  headers: Record<string, string[]>;
  body: string;
}

/**
 * Real curl with `-i` as `client`: status, every response header and the body. `target` is a path on the
 * gateway's base URL or a full `https://` URL (with `--resolve` in `args` for other host names).
 */
export function curlReply(h: Harness, client: Pick<TestClientCertificate, 'certPath' | 'keyPath'> | undefined, target: string, args: string[] = []): Promise<CurlReply> {
  const url = target.startsWith('https://') ? target : `${h.base}${target}`;
  const all = ['-sS', '-i', '--max-time', '10', '--cacert', h.pki.caCertPath, ...(client ? ['--cert', client.certPath, '--key', client.keyPath] : []), ...args, '--path-as-is', url];
  return new Promise((resolve, reject) =>
    execFile('curl', all, { maxBuffer: 16 << 20 }, (error, stdout) => {
      if (error && !stdout) return reject(error);
      const cut = stdout.indexOf('\r\n\r\n');
      const [statusLine = '', ...lines] = stdout.slice(0, cut).split('\r\n');
      const headers: Record<string, string[]> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).toLowerCase();
        (headers[name] ??= []).push(line.slice(colon + 1).trim());
      }
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: stdout.slice(cut + 4) });
    }),
  );
}
