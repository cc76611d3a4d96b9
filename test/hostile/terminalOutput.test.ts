// Text an attacker controls must not take over an auditor's or a user's terminal (or the portal page):
// a token's appended check carries \r, erase-line, an OSC 8 hyperlink, a C1 CSI, bidi overrides, line
// separators and made-up audit rows; a gateway's refusal carries the same. Every human-facing output prints them escaped.
import { writeFileSync } from 'node:fs';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayConfig, runGatehouse } from '../support/gatewayHarness.ts';
import { runTunnel } from '../support/tunnelClient.ts';
import { startHostileGateway, type HostileGateway } from './support/hostileGateway.ts';
import { http } from './support/httpCase.ts';

/** What a terminal or a browser would act on (line feeds are the outputs' own line structure). */
const ACTIVE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const FAKE_ROW = '2026-12-04T10:00:00.000Z request         alice        alice        127.0.0.1:40000       web            GET /web/forged              allow    200';
/** Erases the attacker's own row and writes forged "allow" rows in its place, with a link and reversed text. */
const FORGED = `\r\u001b[2K${FAKE_ROW}\n${FAKE_ROW}\u2028\u0085\u009b2K\u001b]8;;https://evil.example/\u0007details\u001b]8;;\u0007 \u202efdp.exe\u202c \u2066x\u2069\t\u007f`;

let g: HostileGateway;
let forgedToken: string;
let tokenFile: string;

function attenuate(token: string, code: string): string {
  const root = biscuit.PublicKey.fromString(g.h.rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519);
  const block = new biscuit.BlockBuilder();
  block.addCode(code);
  return biscuit.Biscuit.fromBase64(token, root).appendBlock(block).toBase64();
}

const expectInert = (output: string, what: string) => {
  const hit = ACTIVE.exec(output);
  expect(hit === null ? null : `U+${(hit[0].codePointAt(0) ?? 0).toString(16).padStart(4, '0')} at ${hit.index}`, `${what} printed a raw control character`).toBeNull();
};

beforeAll(async () => {
  g = await startHostileGateway();
  forgedToken = attenuate(g.tokens.alice, `check if path("${FORGED}")`);
  tokenFile = join(g.h.dir, 'forged.token');
  writeFileSync(tokenFile, `${forgedToken}\n`, { mode: 0o600 });
  writeFileSync(join(g.h.dir, 'token-root.pub'), `${g.h.rootKey.publicKey}\n`);
  const denied = await g.send(http('GET /web/attacker HTTP/1.1', ['Host: localhost', `Authorization: Bearer ${forgedToken}`, 'Connection: close']), { expectResponses: 1 });
  expect(denied.finals[0]?.status).toBe(403);
  const [record] = await g.auditOf(denied);
  expect(record?.reason).toContain('\u001b[2K');
});
afterAll(async () => {
  await g?.stop();
});

describe('audit query', () => {
  it('table: one line per record, the attacker row stays deny, nothing raw', async () => {
    const { stdout, code } = await runGatehouse(['audit', 'query', g.h.auditFile]);
    expect(code).toBe(0);
    expectInert(stdout, 'audit query (table)');
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1 + g.h.audit().length);
    const attacker = lines.filter((l) => l.includes('GET /web/attacker'));
    expect(attacker).toHaveLength(1);
    expect(attacker[0]).toMatch(/ deny +403 /);
    expect(attacker[0]).toContain('\\r\\x1b[2K');
    expect(lines.filter((l) => l.startsWith('2026-12-04T10:00:00.000Z'))).toEqual([]);
  });

  it('summary and delegations: nothing raw, the forged reason on one escaped line', async () => {
    const summary = await runGatehouse(['audit', 'query', '--format', 'summary', g.h.auditFile]);
    expect(summary.code).toBe(0);
    expectInert(summary.stdout, 'audit query (summary)');
    const lines = summary.stdout.split('\n');
    expect(lines.filter((l) => l.includes('\\r\\x1b[2K'))).toHaveLength(1);
    expect(lines.filter((l) => l.trim().startsWith('2026-12-04T10:00:00.000Z'))).toEqual([]);
    const loans = await runGatehouse(['audit', 'query', '--format', 'delegations', g.h.auditFile]);
    expect(loans.code).toBe(0);
    expectInert(loans.stdout, 'audit query (delegations)');
  });

  it('verify: nothing raw in what it says about the log', async () => {
    const verify = await runGatehouse(['audit', 'verify', '--unsigned', '--live', '300', g.h.auditFile]);
    expectInert(verify.stdout + verify.stderr, 'audit verify');
  });
});

describe('token and policy tools', () => {
  it('token inspect shows the check escaped', async () => {
    const { stdout, code } = await runGatehouse(['token', 'inspect', '--pubkey', join(g.h.dir, 'token-root.pub'), '--token-file', tokenFile]);
    expect(code).toBe(0);
    expectInert(stdout, 'token inspect');
    expect(stdout).toContain('\\r\\x1b[2K');
    expect(stdout).toContain('\\u202e');
  });

  it('authz explain shows the failing check escaped, and DENY', async () => {
    const alice = g.certs.alice;
    const { stdout, code } = await runGatehouse(['authz', 'explain', '--config', join(g.h.dir, 'routes.yaml'), '--route', 'web', '--token-file', tokenFile, '--cert', alice.certPath, '--path', '/web/attacker'], { cwd: g.h.dir });
    expect(code).toBe(2);
    expectInert(stdout, 'authz explain');
    expect(stdout).toMatch(/^decision: +DENY/m);
    expect(stdout.split('\n').filter((l) => l.includes('GET /web/forged'))).toHaveLength(stdout.split('\n').filter((l) => l.includes('\\r\\x1b[2K')).length);
  });
});

describe('check', () => {
  it('prints an error about a policy with control characters escaped', async () => {
    const yamlString = JSON.stringify(`allow if user("${FORGED}"`);
    writeFileSync(join(g.h.dir, 'forged.yaml'), gatewayConfig({ routes: `  - name: forged\n    path: /forged/\n    upstream: unix:run/recorder.sock\n    policy: ${yamlString}\n` }));
    const { stderr, code } = await runGatehouse(['check', '--config', join(g.h.dir, 'forged.yaml')], { cwd: g.h.dir });
    expect(code).toBe(1);
    expect(stderr).toContain('policy');
    expectInert(stderr, 'check');
  });
});

describe('the portal', () => {
  it('shows the forged check of a signed-in token inert', async () => {
    const body = `token=${encodeURIComponent(forgedToken)}`;
    const signIn = await g.send(http('POST /.well-known/gatehouse/session HTTP/1.1', ['Host: localhost', 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${body.length}`, 'Connection: close'], body), { expectResponses: 1 });
    const cookie = /^([^;]+)/.exec(signIn.finals[0]?.header('set-cookie') ?? '')?.[1] ?? '';
    expect(cookie).not.toBe('');
    const page = await g.send(http('GET /.well-known/gatehouse/ HTTP/1.1', ['Host: localhost', `Cookie: ${cookie}`, 'Connection: close']), { expectResponses: 1 });
    expect(page.finals[0]?.status).toBe(200);
    expect(page.finals[0]?.text).toContain('GET /web/forged');
    expectInert(page.finals[0]?.text ?? '', 'the portal page');
  });
});

describe('the tunnel and publish clients', () => {
  let fake: TlsServer;
  beforeAll(async () => {
    // A gateway whose refusal carries the same text (a compromised or impersonated one, or a reason echoing input).
    const refusal = JSON.stringify({ error: FORGED });
    fake = createTlsServer({ cert: g.h.pki.serverCert, key: g.h.pki.serverKey, ca: g.h.pki.caCert, requestCert: true }, (socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.end(`HTTP/1.1 403 Forbidden\u001b[2K\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(refusal)}\r\nConnection: close\r\n\r\n${refusal}`));
    });
    await new Promise<void>((ok) => fake.listen(0, '127.0.0.1', ok));
  });
  afterAll(() => fake?.close());

  it('prints a gateway refusal escaped (tunnel over CONNECT and WebSocket, publish)', async () => {
    const port = (fake.address() as { port: number }).port;
    const alice = g.certs.alice;
    const flags = ['--gateway', `https://localhost:${port}`, '--ca', g.h.pki.caCertPath, '--cert', alice.certPath, '--key', alice.keyPath, '--token-file', tokenFile];
    for (const transport of ['connect', 'websocket']) {
      const run = await runTunnel([...flags, '--transport', transport, '--stdio', 'tcp'], { ...process.env, HOME: g.h.dir });
      expect(run.code, run.stderr).toBe(4);
      expect(run.stderr).toContain('403');
      expectInert(run.stderr, `gatehouse tunnel (${transport})`);
    }
    const published = await runGatehouse(['publish', `app=unix:${join(g.h.dir, 'run', 'recorder.sock')}`, ...flags], { cwd: g.h.dir });
    expect(published.code, published.stderr).toBe(4);
    expect(published.stderr).toContain('403');
    expectInert(published.stderr, 'gatehouse publish');
  });
});
