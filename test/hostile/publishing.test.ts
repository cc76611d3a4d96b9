// Hostile publishers against a real `gatehouse serve`: a borrower of alice's token trying to publish under
// her name (plain loans, delegated loans, blocks the borrower appends himself), and the publish policy's chain facts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { biscuit } from '../../src/token/biscuitModule.ts';
import { parsePublicKey } from '../../src/token/keyFiles.ts';
import { PUBLISH_PATH } from '../../src/routing/reservedPaths.ts';
import { PUBLISH_PROTOCOL, SERVICES_HEADER } from '../../src/upstream/publishProtocol.ts';
import { cli, curl, inOneHour, mintRaw, startHarness, type Harness } from '../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { httpAndWebSocketService, publishedRoute, publishTop, startPublisher } from '../support/publishPeers.ts';
import { cleanEnv, gatewayFlags } from '../support/tunnelClient.ts';

let h: Harness;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
let home: string;
/** alice's token as minted with the right to publish any service (not bound: she may lend it). */
let aliceToken: string;

const gatehouse = (args: string[]) => execFileSync(process.execPath, [cli, ...args], { cwd: h.dir, encoding: 'utf8' }).trim();
const pubkey = () => join(h.dir, 'certs', 'token-root.pub');
/** `gatehouse token attenuate` on `token` with `args`: what the lender runs. */
const attenuate = (token: string, args: string[]) => gatehouse(['token', 'attenuate', '--pubkey', pubkey(), '--token', token, ...args]);

/** The borrower's own block appended to a token he holds (no key needed), in Datalog he chose. */
function appendBlock(token: string, code: string): string {
  const root = parsePublicKey(h.rootKey.publicKey);
  if (!root.ok) throw new Error(root.error.message);
  const parsed = biscuit.Biscuit.fromBase64(token, root.value);
  const block = biscuit.Biscuit.block_builder();
  block.addCode(code);
  return parsed.appendBlock(block).toBase64();
}

/** One registration on the publish endpoint, as `gatehouse publish` sends it: 101, or the refusal's status. */
function register(client: TestClientCertificate, token: string, services: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: h.port,
      servername: 'localhost',
      path: PUBLISH_PATH,
      ca: h.pki.caCert,
      cert: client.cert,
      key: client.key,
      headers: { connection: 'Upgrade', upgrade: PUBLISH_PROTOCOL, [SERVICES_HEADER]: services.join(','), authorization: `Bearer ${token}` },
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      resolve(101);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The refusal record of the registration of `service`. */
const refusalOf = (service: string) => h.waitForAudit((r) => r.event === 'publish.open' && r.decision === 'deny' && (r.reason ?? '').startsWith(`publish ${service}:`));

beforeAll(async () => {
  h = await startHarness({ routes: publishedRoute, extraTop: publishTop });
  alice = await h.pki.client('alice');
  bob = await h.pki.client('bob');
  home = mkdtempSync(join(tmpdir(), 'gatehouse-hostile-publish-'));
  writeFileSync(join(h.dir, 'certs', 'token-root.key'), `${h.rootKey.privateKey}\n`, { mode: 0o600 });
  aliceToken = mintRaw(h.rootKey.privateKey, `user("alice"); publish_right("*"); check if time($t), $t <= ${inOneHour()};`);
}, 60_000);

afterAll(async () => {
  await h?.stop();
});

describe('a loan does not carry the right to publish', () => {
  it("bob with alice's plain loan (--bind-cert bob.crt --ttl 1h) cannot publish jupyter under her name: 403, reason audited, /~alice/jupyter/ stays hers", async () => {
    const loan = attenuate(aliceToken, ['--bind-cert', bob.certPath, '--ttl', '1h']);
    // What bob is handed says so: `token inspect` shows the loan cannot publish.
    expect(gatehouse(['token', 'inspect', '--pubkey', pubkey(), '--token', loan])).toMatch(/^publish: +no\b/m);
    const loanFile = join(home, 'loan.token');
    writeFileSync(loanFile, `${loan}\n`, { mode: 0o600 });
    // The loan still works for what it is for: requests as alice (the route policy decides).
    expect((await curl(h, '/~alice/none/', { client: bob, token: loan })).status).toBe(503);
    const sock = join(home, 'bob-jupyter.sock');
    const service = await httpAndWebSocketService(sock);
    try {
      const flags = gatewayFlags(h, bob, loanFile).filter((f, i, all) => f !== '--transport' && all[i - 1] !== '--transport');
      const publisher = startPublisher([...flags, `jupyter=unix:${sock}`], cleanEnv(home));
      const code = await new Promise((r) => publisher.proc.once('exit', r));
      expect(publisher.stderr()).toMatch(/403.*not allowed to publish jupyter/);
      expect(code).toBe(4);
      const refused = await refusalOf('jupyter');
      expect(refused).toMatchObject({ status: 403, token: { user: 'alice' }, client: { cn: 'bob' } });
      expect(refused.reason).toMatch(/block 1 does not pass on the right to publish/);
      // alice's own request never reaches bob's service.
      const mine = await curl(h, '/~alice/jupyter/lab', { client: alice, token: aliceToken });
      expect(mine.status).toBe(503);
    } finally {
      service.close();
    }
  }, 30_000);

  /** Blocks bob writes himself; SERVICE is the service he then registers. */
  const ownBlocks: { name: string; code: string }[] = [
    { name: 'publish_right("*")', code: 'publish_right("*");' },
    { name: 'publish_right of the service', code: 'publish_right("SERVICE");' },
    { name: 'a rule deriving publish_right', code: 'publish_right($s) <- service($s);' },
    { name: 'publish_right next to a check that holds', code: 'publish_right("*"); check if service($s);' },
  ];
  for (const [index, { name, code }] of ownBlocks.entries()) {
    it(`bob appending his own block to the loan (${name}) still cannot publish`, async () => {
      const loan = attenuate(aliceToken, ['--bind-cert', bob.certPath, '--ttl', '1h']);
      const service = `own-${index}`;
      expect(await register(bob, appendBlock(loan, code.replace('SERVICE', service)), [service])).toBe(403);
      expect((await refusalOf(service)).reason).toMatch(/block 1 does not pass on the right to publish/);
    });
  }

  it('a delegated loan (a block signed with the delegation key) does not carry it either', async () => {
    const out = join(home, 'delegable.token');
    gatehouse(['token', 'mint', '--key', 'certs/token-root.key', '--user', 'alice', '--publish', '--bind-cert', alice.certPath, '--delegable', '--ttl', '1h', '--out', out]);
    const own = readFileSync(out, 'utf8').trim();
    expect(await register(alice, own, ['deleg-own'])).toBe(101);
    const lent = attenuate(own, ['--delegation-key', `${out}.delegation.key`, '--bind-cert', bob.certPath, '--ttl', '1h']);
    expect(await register(bob, lent, ['deleg-lent'])).toBe(403);
    expect((await refusalOf('deleg-lent')).reason).toMatch(/block 1 does not pass on the right to publish/);
    const granted = attenuate(own, ['--delegation-key', `${out}.delegation.key`, '--bind-cert', bob.certPath, '--ttl', '1h', '--allow-publish']);
    expect(await register(bob, granted, ['deleg-granted'])).toBe(101);
  });
});

describe('the right must be granted, and can only narrow', () => {
  it('a token whose authority block has no publish_right cannot publish (the site policy allows any user)', async () => {
    const plain = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
    expect(await register(alice, plain, ['no-right'])).toBe(403);
    expect((await refusalOf('no-right')).reason).toMatch(/carries no right to publish/);
    // A right the authority does not give, written in a later block by the holder, adds nothing.
    expect(await register(alice, appendBlock(plain, 'publish_right("*");'), ['no-right-2'])).toBe(403);
  });

  it('token mint --publish grants it; --publish NAME only that service', async () => {
    const any = gatehouse(['token', 'mint', '--key', 'certs/token-root.key', '--user', 'alice', '--publish', '--unbound', '--ttl', '1h']);
    expect(await register(alice, any, ['minted-any'])).toBe(101);
    const one = gatehouse(['token', 'mint', '--key', 'certs/token-root.key', '--user', 'alice', '--publish', 'minted-one', '--unbound', '--ttl', '1h']);
    expect(await register(alice, one, ['minted-one'])).toBe(101);
    expect(await register(alice, one, ['minted-other'])).toBe(403);
    expect((await refusalOf('minted-other')).reason).toMatch(/covers minted-one, not minted-other/);
  });

  it("alice's loan that grants publishing (--allow-publish) can publish; --publish NAME passes on that service only", async () => {
    const granted = attenuate(aliceToken, ['--bind-cert', bob.certPath, '--ttl', '1h', '--allow-publish']);
    expect(gatehouse(['token', 'inspect', '--pubkey', pubkey(), '--token', granted])).toMatch(/^publish: +any service$/m);
    expect(await register(bob, granted, ['lent-any'])).toBe(101);
    const open = await h.waitForAudit((r) => r.event === 'publish.open' && r.decision === 'allow' && (r.detail as { services?: string[] } | undefined)?.services?.[0] === 'lent-any');
    expect(open).toMatchObject({ token: { user: 'alice' }, client: { cn: 'bob' } });
    const one = attenuate(aliceToken, ['--bind-cert', bob.certPath, '--ttl', '1h', '--publish', 'lent-one']);
    expect(await register(bob, one, ['lent-one'])).toBe(101);
    expect(await register(bob, one, ['lent-two'])).toBe(403);
    // Bob narrows it further himself without granting: that ends the right, as for any plain attenuation.
    const narrowed = attenuate(granted, ['--ttl', '30m']);
    expect(await register(bob, narrowed, ['lent-narrowed'])).toBe(403);
    expect((await refusalOf('lent-narrowed')).reason).toMatch(/block 2 does not pass on the right to publish/);
  });

  it('the publish policy sees the chain: `deny if token_blocks($n), $n > 1` refuses even a granted loan', async () => {
    const config = join(h.dir, 'routes.yaml');
    const original = readFileSync(config, 'utf8');
    const reloads = () => h.audit().filter((r) => r.event === 'config.reload' && r.decision === 'allow').length;
    const before = reloads();
    writeFileSync(config, original.replace('    allow if user($u);\n  streamsPerPublisher', '    deny if token_blocks($n), $n > 1;\n    allow if user($u), publish_granted(0, "*");\n  streamsPerPublisher'));
    h.proc.kill('SIGHUP');
    await h.waitForAudit(() => reloads() > before, 10_000);
    try {
      expect(await register(alice, aliceToken, ['chain-own'])).toBe(101);
      const granted = attenuate(aliceToken, ['--bind-cert', bob.certPath, '--ttl', '1h', '--allow-publish']);
      expect(await register(bob, granted, ['chain-lent'])).toBe(403);
      expect((await refusalOf('chain-lent')).reason).toMatch(/deny policy matched: deny if token_blocks\(\$n\), \$n > 1/);
    } finally {
      const now = reloads();
      writeFileSync(config, original);
      h.proc.kill('SIGHUP');
      await h.waitForAudit(() => reloads() > now, 10_000);
    }
  });
});

describe("a loan does not open the lender's account", () => {
  /** Signs in with `token` as `client` and returns the portal page. */
  async function portalWith(client: TestClientCertificate, token: string, name: string): Promise<string> {
    const jar = join(home, `${name}.cookies`);
    const signIn = await curl(h, '/.well-known/gatehouse/session', { client, args: ['-c', jar, '--data-urlencode', `token=${token}`] });
    expect(signIn.status).toBe(303);
    const page = await curl(h, '/.well-known/gatehouse/', { client, args: ['-b', jar] });
    expect(page.status).toBe(200);
    return page.body;
  }

  it("bob signed in with alice's loan sees what the loan opens, not alice's activity, who used her services or her publishers", async () => {
    expect((await curl(h, '/~alice/private-diary/entry', { client: alice, token: aliceToken })).status).toBe(503);
    await h.waitForAudit((r) => r.event === 'request' && r.path === '/~alice/private-diary/entry');
    // alice herself sees it (the control).
    expect(await portalWith(alice, aliceToken, 'alice')).toContain('/~alice/private-diary/entry');
    for (const [name, extra] of [['plain', []], ['granted', ['--allow-publish']]] as const) {
      const loan = attenuate(aliceToken, ['--bind-cert', bob.certPath, '--ttl', '1h', ...extra]);
      const page = await portalWith(bob, loan, `bob-${name}`);
      expect(page).not.toContain('private-diary');
      expect(page).not.toMatch(/id="(activity|used-by|published)"/);
      expect(page).toMatch(/lent or attenuated token/);
    }
  });
});
