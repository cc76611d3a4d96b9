// Attribution of delegation in the audit log, with real tokens, a real `gatehouse serve`, curl and a
// CONNECT tunnel: each block's role, signer and bound certificate is recorded, and `audit query`
// answers "who lent access to whom, when, and what did the borrower do".
import { readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord, AuditTokenBlock } from '../src/audit/auditRecord.ts';
import { startEchoService } from '../src/demo/echoService.ts';
import { runGatehouseOk, curl, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { echoHandler } from './support/tunnelClient.ts';
import { connectTunnel, unixService, type UnixService } from './support/tunnelPeers.ts';

const facility = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);

let h: Harness;
let echo: Server;
let raw: UnixService;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
let carol: TestClientCertificate;
/** The public half of alice's delegation key: the signer of the block that lends her token. */
let delegationKey: string;

const routes = `  - name: notebook
    path: /~{user}/notebook/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u), param("user", $u);
  - name: raw
    protocols: [tcp]
    upstream: unix:run/raw.sock
    policy: |
      allow if user($u), protocol("tcp");
  - name: beamline
    path: /beamline/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u), member($u, "beamline") trusting authority, {facility};
`;


const ok = (args: string[]) => runGatehouseOk(args, { cwd: h.dir });

const read = (file: string) => readFileSync(join(h.dir, file), 'utf8').trim();
const get = async (path: string, client: TestClientCertificate, token: string) => (await curl(h, path, { client, token })).status;
/** The request record of a path (each test uses its own paths). */
const recordOf = (path: string, status: number) => h.waitForAudit((r) => r.event === 'request' && r.path === path && r.status === status);
const blocksOf = (r: AuditRecord): AuditTokenBlock[] | undefined => r.token?.blocks;

beforeAll(async () => {
  h = await startHarness({ routes, authzExtra: `  externalKeys:\n    facility: ${facility.getPublicKey().toString()}\n` });
  echo = await startEchoService(join(h.dir, 'run', 'demo.sock'), 'demo');
  raw = await unixService(join(h.dir, 'run', 'raw.sock'), echoHandler);
  writeFileSync(join(h.dir, 'certs', 'token-root.key'), `${h.rootKey.privateKey}\n`, { mode: 0o600 });
  [alice, bob, carol] = await Promise.all([h.pki.client('alice'), h.pki.client('bob'), h.pki.client('carol')]);
  await ok(['token', 'mint', '--key', 'certs/token-root.key', '--user', 'alice', '--bind-cert', alice.certPath, '--delegable', '--ttl', '8h', '--out', 'alice.token']);
  // alice lends bob her notebook and her raw service for an hour, signed with her delegation key.
  await ok([
    'token', 'attenuate', '--pubkey', 'certs/token-root.pub', '--token-file', 'alice.token', '--delegation-key', 'alice.token.delegation.key',
    '--bind-cert', bob.certPath, '--ttl', '1h', '--route', 'notebook', '--route', 'raw', '--out', 'bob.token',
  ]);
  // alice narrows her own token for a script: an attenuation, not a loan.
  await ok(['token', 'attenuate', '--pubkey', 'certs/token-root.pub', '--token-file', 'alice.token', '--ttl', '10m', '--out', 'script.token']);
  const pair = biscuit.KeyPair.fromPrivateKey(biscuit.PrivateKey.fromString(read('alice.token.delegation.key')));
  delegationKey = pair.getPublicKey().toString();
}, 60_000);

afterAll(async () => {
  echo?.close();
  raw?.close();
  await h?.stop();
});

describe('the token blocks in the audit record', () => {
  it('names the lender, the borrower and the signer of a delegated request, on every decision path', async () => {
    // Twice within the decision cache's second: the cached decision carries the blocks too.
    expect(await get('/~alice/notebook/shared/a.csv', bob, read('bob.token'))).toBe(200);
    expect(await get('/~alice/notebook/shared/a.csv', bob, read('bob.token'))).toBe(200);
    await h.waitForAudit((r) => r.path === '/~alice/notebook/shared/a.csv' && h.audit().filter((x) => x.path === r.path).length === 2);
    const records = h.audit().filter((r) => r.path === '/~alice/notebook/shared/a.csv');
    expect(records).toHaveLength(2);
    for (const r of records) {
      expect(r).toMatchObject({ decision: 'allow', client: { cn: 'bob', fingerprint: bob.fingerprint }, token: { user: 'alice' } });
      const ids = r.token?.revocationIds ?? [];
      expect(ids).toHaveLength(2);
      expect(blocksOf(r)).toEqual([
        { index: 0, role: 'authority', revocationId: ids[0], boundTo: { fingerprint: alice.fingerprint } },
        { index: 1, role: 'third-party', revocationId: ids[1], signer: delegationKey, delegation: true, boundTo: { fingerprint: bob.fingerprint } },
      ]);
    }
  });

  it('records the blocks of a refused delegated request: outside the loan, and another certificate presenting it', async () => {
    expect(await get('/~carol/notebook/x', bob, read('bob.token'))).toBe(403);
    expect(await get('/~alice/notebook/shared/b.csv', carol, read('bob.token'))).toBe(403);
    for (const r of [await recordOf('/~carol/notebook/x', 403), await recordOf('/~alice/notebook/shared/b.csv', 403)]) {
      expect(r.token?.user).toBe('alice');
      expect(blocksOf(r)?.map((b) => [b.role, b.boundTo?.fingerprint])).toEqual([['authority', alice.fingerprint], ['third-party', bob.fingerprint]]);
    }
  });

  it('records the blocks on tunnel.open and tunnel.close of a delegated CONNECT tunnel', async () => {
    const t = await connectTunnel(h, bob, 'raw:443', { 'Proxy-Authorization': `Bearer ${read('bob.token')}` });
    if (!t.ok) throw new Error(`tunnel refused: ${t.status} ${t.body}`);
    const chunks: Buffer[] = [];
    t.end.onData((c) => chunks.push(c));
    await t.end.write(Buffer.from('hello through a borrowed token\n'));
    t.end.end();
    await t.end.peerEnded;
    expect(Buffer.concat(chunks).toString()).toBe('hello through a borrowed token\n');
    const close = await h.waitForAudit((r) => r.event === 'tunnel.close' && r.route === 'raw', 10_000);
    const open = h.audit().find((r) => r.event === 'tunnel.open' && r.req === close.req);
    for (const r of [open, close]) {
      expect(r?.client?.cn).toBe('bob');
      expect(blocksOf(r ?? { event: 'request' })?.[1]).toMatchObject({ role: 'third-party', delegation: true, boundTo: { fingerprint: bob.fingerprint } });
    }
  });

  it('names an attenuation block and a third-party signer by its externalKeys name; a one-block token has no blocks', async () => {
    expect(await get('/~alice/notebook/script', alice, read('script.token'))).toBe(200);
    const script = await recordOf('/~alice/notebook/script', 200);
    expect(blocksOf(script)?.map(({ index, role, boundTo }) => ({ index, role, boundTo }))).toEqual([
      { index: 0, role: 'authority', boundTo: { fingerprint: alice.fingerprint } },
      { index: 1, role: 'attenuation', boundTo: undefined },
    ]);

    const parsed = biscuit.Biscuit.fromBase64(read('alice.token'), biscuit.PublicKey.fromString(h.rootKey.publicKey.slice('ed25519/'.length), biscuit.SignatureAlgorithm.Ed25519));
    const request = biscuit.ThirdPartyRequest.fromBase64(parsed.getThirdPartyRequest().toBase64());
    const block = new biscuit.BlockBuilder();
    block.addCode('member("alice", "beamline");');
    const attested = parsed.appendThirdPartyBlock(facility.getPublicKey(), request.createBlock(facility.getPrivateKey(), block)).toBase64();
    expect(await get('/beamline/scan', alice, attested)).toBe(200);
    const beamline = await recordOf('/beamline/scan', 200);
    expect(blocksOf(beamline)?.[1]).toEqual({ index: 1, role: 'third-party', revocationId: beamline.token?.revocationIds?.[1], signer: 'facility' });

    expect(await get('/~alice/notebook/own', alice, read('alice.token'))).toBe(200);
    const own = await recordOf('/~alice/notebook/own', 200);
    expect(own.token?.revocationIds).toHaveLength(1);
    expect(own.token).not.toHaveProperty('blocks');
  });

  it('keeps the blocks on a refusal for a revoked loan (decided from the token cache)', async () => {
    await ok(['token', 'revoke', '--list', 'certs/revoked.txt', '--token-file', 'bob.token', '--block', '1', '--pubkey', 'certs/token-root.pub']);
    let last = 0;
    for (let i = 0; i < 50 && last !== 403; i++) {
      last = await get('/~alice/notebook/after-revoke', bob, read('bob.token'));
      if (last !== 403) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(last).toBe(403);
    // The reload emptied the caches, so that refusal came from a worker; this one from the token cache.
    expect(await get('/~alice/notebook/again', bob, read('bob.token'))).toBe(403);
    for (const r of [await recordOf('/~alice/notebook/after-revoke', 403), await recordOf('/~alice/notebook/again', 403)]) {
      expect(r.reason).toMatch(/\(block 1\) is revoked/);
      expect(blocksOf(r)?.[1]).toMatchObject({ delegation: true, boundTo: { fingerprint: bob.fingerprint } });
    }
  });
});

describe('audit query: who lent access to whom, when, and what the borrower did', () => {
  /** Records made under bob's loan, from the log itself: what the query must find. */
  const loanRecords = () =>
    h.audit().filter((r) => ['request', 'tunnel.open', 'tunnel.close'].includes(r.event) && r.token?.blocks?.[1]?.boundTo?.fingerprint === bob.fingerprint);

  it('--delegated-by alice lists exactly the borrowed requests, not her own (attenuated or attested) ones', async () => {
    const out = await ok(['audit', 'query', '--delegated-by', 'alice', '--format', 'json', h.auditFile]);
    const found = out.trim().split('\n').map((l) => JSON.parse(l) as AuditRecord & { seq: number });
    expect(found.map((r) => r.seq)).toEqual(loanRecords().map((r) => (r as { seq?: number }).seq));
    expect(new Set(found.map((r) => r.client?.cn))).toEqual(new Set(['bob', 'carol']));
    expect(found.some((r) => r.path === '/~alice/notebook/script' || r.path === '/beamline/scan')).toBe(false);
    expect(await ok(['audit', 'query', '--delegated-by', 'bob', '--format', 'json', h.auditFile])).toBe('');
  });

  it('--format delegations sums the loan: borrower, first and last use, requests, denials, bytes, routes', async () => {
    const records = loanRecords();
    const attempts = records.filter((r) => r.event !== 'tunnel.close');
    const out = await ok(['audit', 'query', '--format', 'delegations', h.auditFile]);
    const [head, row, ...rest] = out.trimEnd().split('\n');
    expect(rest).toEqual([]);
    expect(head).toMatch(/^lender +borrower +block +loan block id +first use +last use +requests +allowed +denied +bytes in +bytes out +tunnels +routes +also presented by$/);
    const cells = (row ?? '').split(/ {2,}/);
    const loanId = records[0]?.token?.revocationIds?.[1] ?? '';
    expect(cells).toEqual([
      'alice',
      `bob (${bob.fingerprint.slice(0, 15)}…${bob.fingerprint.slice(-4)})`,
      '1 (delegation key)',
      `${loanId.slice(0, 16)}…`,
      records[0]?.time,
      records.at(-1)?.time,
      String(attempts.length),
      String(attempts.filter((r) => r.decision === 'allow').length),
      String(attempts.filter((r) => r.decision === 'deny').length),
      String(records.reduce((n, r) => n + (r.bytesIn ?? 0), 0)),
      String(records.reduce((n, r) => n + (r.bytesOut ?? 0), 0)),
      '1',
      'notebook,raw',
      'carol',
    ]);
    // What the test did under the loan: 2 allowed GETs, 2 refusals, 1 tunnel, 2 refusals after revocation (and retries before it took effect).
    expect(attempts.filter((r) => r.decision === 'allow').length).toBeGreaterThanOrEqual(3);
    expect(attempts.filter((r) => r.decision === 'deny').length).toBeGreaterThanOrEqual(3);
  });
});
