// Revocation through a real `gatehouse serve` and curl: a revoked id takes effect without a restart,
// by editing the list (file watch) and by SIGHUP, for authority and attenuation block ids; a broken
// list fails closed. Also the Prometheus listener that the same gateway exposes.
import { appendFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEchoService } from '../src/demo/echoService.ts';
import { runGatehouse, curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { connectTunnel, demoAndRawRoutes, unixService, type UnixService } from './support/tunnelPeers.ts';
import type { TestClientCertificate } from './support/pki.ts';

let h: Harness;
let alice: TestClientCertificate;
let echo: Server;
let raw: UnixService;

const routes = demoAndRawRoutes;

beforeAll(async () => {
  h = await startHarness({ routes, extraTop: 'metrics:\n  listen: 127.0.0.1:0\n' });
  alice = await h.pki.client('alice');
  echo = await startEchoService(join(h.dir, 'run', 'demo.sock'), 'demo');
  raw = await unixService(join(h.dir, 'run', 'raw.sock'), (socket) => socket.pipe(socket));
  writeFileSync(join(h.dir, 'certs', 'token-root.key'), `${h.rootKey.privateKey}\n`, { mode: 0o600 });
});

afterAll(async () => {
  echo?.close();
  raw?.close();
  await h?.stop();
});

const rootPublic = () => biscuit.PublicKey.fromString(h.rootKey.publicKey.replace(/^ed25519\//, ''), biscuit.SignatureAlgorithm.Ed25519);
const token = (user: string) => mintRaw(h.rootKey.privateKey, `user("${user}"); check if time($t), $t <= ${inOneHour()};`);
function attenuate(parent: string, code: string): string {
  const block = biscuit.Biscuit.block_builder();
  block.addCode(code);
  return biscuit.Biscuit.fromBase64(parent, rootPublic()).appendBlock(block).toBase64();
}
const ids = (t: string) => biscuit.Biscuit.fromBase64(t, rootPublic()).getRevocationIdentifiers().map(String);
const status = async (path: string, t: string) => (await curl(h, path, { client: alice, token: t })).status;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until the request answers `expected` (the file watch is asynchronous); returns the last status. */
async function eventually(path: string, t: string, expected: number): Promise<number> {
  let last = 0;
  for (let i = 0; i < 50; i++) {
    last = await status(path, t);
    if (last === expected) return last;
    await sleep(100);
  }
  return last;
}

const gatehouse = (args: string[]) => runGatehouse(args, { cwd: h.dir });

const reloads = () => h.audit().filter((r) => r.event === 'revocation.reload');

describe('revocation without restart', () => {
  it('applies ids added to the list file, for an authority block and for an attenuation block', async () => {
    const whole = token('alice');
    const parent = token('alice');
    const delegated = attenuate(parent, 'check if route("demo");');
    for (const t of [whole, parent, delegated]) expect(await status('/demo/before', t)).toBe(200);

    appendFileSync(h.revocationList, `${ids(whole)[0]}\n${ids(delegated)[1]}\n`);
    expect(await eventually('/demo/edited-whole', whole, 403)).toBe(403);
    expect(await eventually('/demo/edited-delegated', delegated, 403)).toBe(403);
    // Revoking the attenuation block ends that delegation only.
    expect(await status('/demo/edited-parent', parent)).toBe(200);

    const denied = await h.waitForAudit((r) => r.event === 'request' && r.path === '/demo/edited-delegated' && r.status === 403);
    expect(denied.reason).toBe(`revocation id ${ids(delegated)[1]} (block 1) is revoked`);
    expect(denied.token).toMatchObject({ user: 'alice', revocationIds: ids(delegated) });
    const reload = await h.waitForAudit((r) => r.event === 'revocation.reload' && r.detail?.count === 2);
    expect(reload.decision).toBe('allow');
  });

  it('applies ids on SIGHUP, also when no file event reaches the watcher', async () => {
    // The list becomes a symlink to a file in another folder: edits to that file raise no event in certs/.
    const realDir = join(h.dir, 'lists');
    mkdirSync(realDir, { recursive: true });
    const real = join(realDir, 'revoked.txt');
    writeFileSync(real, readFileSync(h.revocationList));
    const before = reloads().length;
    rmSync(h.revocationList);
    symlinkSync(real, h.revocationList);
    await h.waitForAudit(() => reloads().length > before && reloads().at(-1)?.decision === 'allow');

    const whole = token('alice');
    const delegated = attenuate(token('alice'), 'check if route("demo");');
    writeFileSync(join(h.dir, 'delegated.txt'), delegated);
    for (const t of [whole, delegated]) expect(await status('/demo/hup-before', t)).toBe(200);

    appendFileSync(real, `${ids(whole)[0]}\n`);
    const revoke = await gatehouse(['token', 'revoke', '--list', real, '--token-file', 'delegated.txt', '--block', '1', '--pubkey', 'certs/token-root.pub']);
    expect(revoke).toMatchObject({ code: 0, stdout: `${ids(delegated)[1]}\n` });
    await sleep(600);
    expect(await status('/demo/hup-not-yet', whole)).toBe(200);

    const counted = reloads().length;
    h.proc.kill('SIGHUP');
    expect(await eventually('/demo/hup-whole', whole, 403)).toBe(403);
    expect(await eventually('/demo/hup-delegated', delegated, 403)).toBe(403);
    await h.waitForAudit(() => reloads().length > counted);
    expect(reloads().at(-1)).toMatchObject({ decision: 'allow', detail: { count: 4 } });
    expect(h.audit().some((r) => r.event === 'config.reload' && r.decision === 'allow')).toBe(true);
  });

  it('ends a tunnel that is already open when its token is revoked', async () => {
    const t = token('alice');
    const opened = await connectTunnel(h, alice, 'raw:443', { 'Proxy-Authorization': `Bearer ${t}` });
    if (!opened.ok) throw new Error(`tunnel refused: ${opened.status} ${opened.body}`);
    const echoed = new Promise<string>((resolve) => opened.end.onData((d) => resolve(d.toString())));
    await opened.end.write(Buffer.from('ping'));
    expect(await echoed).toBe('ping');
    appendFileSync(h.revocationList, `${ids(t)[0]}\n`);
    h.proc.kill('SIGHUP');
    // The client socket is half-open: the gateway ending the tunnel shows as the peer's end (or a close).
    const ended = Promise.race([opened.end.peerEnded, opened.end.closed]);
    await Promise.race([ended, sleep(10_000).then(() => Promise.reject(new Error('tunnel still open 10 s after the revocation')))]);
    opened.end.destroy();
    const record = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'raw');
    expect(record.reason).toBe('token revoked');
    expect(record.token?.revocationIds).toContain(ids(t)[0]);
  });

  it('fails closed while the list is malformed, and recovers when it is fixed', async () => {
    const t = token('alice');
    rmSync(h.revocationList);
    writeFileSync(h.revocationList, 'this is not a revocation id\n');
    expect(await eventually('/demo/broken', t, 503)).toBe(503);
    const refused = await h.waitForAudit((r) => r.event === 'request' && r.path === '/demo/broken' && r.status === 503);
    expect(refused.reason).toMatch(/revocation list unavailable: .*revoked\.txt:1/);
    const broken = await h.waitForAudit((r) => r.event === 'revocation.reload' && r.decision === 'deny');
    expect(broken.reason).toMatch(/refusing every request/);

    writeFileSync(h.revocationList, '# fixed\n');
    expect(await eventually('/demo/fixed', t, 200)).toBe(200);
  });
});

describe('metrics listener', () => {
  it('serves gatehouse_ metrics over plain HTTP, on its own address', async () => {
    const start = await h.waitForAudit((r) => r.event === 'gateway.start');
    const address = String(start.detail?.metrics);
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    const response = await fetch(`http://${address}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toMatch(/^gatehouse_authz_worker_wasm_memory_bytes\{worker="0"\} \d+/m);
    expect(text).toMatch(/^gatehouse_authz_decisions_total\{result="allow",path="(cold|token-cached|decision-cached)"\} [1-9]/m);
    expect(text).toMatch(/^gatehouse_authz_decisions_total\{result="deny",path="(cold|token-cached)"\} [1-9]/m);
    expect(text).toMatch(/^gatehouse_authz_decisions_total\{result="unavailable",path="early"\} [1-9]/m);
    expect(text).toMatch(/^gatehouse_authz_cache_hits_total\{cache="token"\} [1-9]/m);
    expect(text).toMatch(/^gatehouse_authz_decision_seconds_bucket\{le="0.001",path="token-cached"\} \d+/m);
    expect(text).toMatch(/^gatehouse_requests_total\{protocol="http",route="demo",decision="allow",status="200"\} [1-9]/m);
    expect(text).toMatch(/^gatehouse_reloads_total\{kind="revocation",result="error"\} [1-9]/m);
    expect(text).toMatch(/^gatehouse_process_resident_memory_bytes \d+/m);
    expect((await fetch(`http://${address}/other`)).status).toBe(404);
  });
});
