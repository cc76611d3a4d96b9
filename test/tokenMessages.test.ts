// What token commands and the gateway say about tokens (issue 19): biscuit-wasm's errors in the
// product's words on the terminal and in audit reasons, and `attenuate --bind-cert` refusing a token no one could use.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as biscuit from '@biscuit-auth/biscuit-wasm';
import { biscuitErrorText } from '../src/token/biscuitErrors.ts';
import { curl, runGatehouse, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

let h: Harness;
let alice: TestClientCertificate;
let bob: TestClientCertificate;
const gatehouse = (args: string[]) => runGatehouse(args, { cwd: h.dir });

beforeAll(async () => {
  h = await startHarness({ routes: '  - name: r\n    path: /r/\n    upstream: unix:run/r.sock\n    policy: "allow if user($u);"\n' });
  alice = await h.pki.client('alice');
  bob = await h.pki.client('bob');
  writeFileSync(join(h.dir, 'certs', 'token-root.key'), `${h.rootKey.privateKey}\n`, { mode: 0o600 });
});
afterAll(() => h?.stop());

/** No library JSON ({"Base64":...}, {"Format":...}) in what a person reads. */
const noLibraryJson = /\{"|"\}|\[\d+,\d+\]/;

describe('malformed tokens, in words', () => {
  it('token inspect names the bad base64 symbol and its place, without the library JSON', async () => {
    const run = await gatehouse(['token', 'inspect', '--pubkey', 'certs/token-root.pub', '--token', 'abcdefe']);
    expect(run.stderr).toBe('error: the token is not a valid Biscuit: not valid base64url text (invalid last symbol "e" at 6)\n');
    expect(run.code).toBe(1);
  });

  it('the gateway audit reason for the same token says the same, and the client gets the short reason', async () => {
    const reply = await curl(h, '/r/x', { client: alice, token: 'abcdefe' });
    expect(reply.status).toBe(401);
    const record = await h.waitForAudit((r) => r.status === 401 && r.path === '/r/x');
    expect(record.reason).toMatch(/not valid base64url text \(invalid last symbol "e" at 6\)/);
    expect(record.reason).not.toMatch(noLibraryJson);
  });

  it('a token signed by another key, and bytes that are not a Biscuit, are named as such', async () => {
    const other = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);
    const builder = new biscuit.BiscuitBuilder();
    builder.addCode('user("alice");');
    const foreign = builder.build(other.getPrivateKey()).toBase64();
    const signed = await gatehouse(['token', 'inspect', '--pubkey', 'certs/token-root.pub', '--token', foreign]);
    expect(signed.stderr).toMatch(/^error: the token does not verify against the root public key \(a block signature is invalid\)$/m);
    const junk = await gatehouse(['token', 'attenuate', '--token', 'AAAAAAAAAAAAAAAAAAAAAAAA', '--ttl', '1h']);
    expect(junk.stderr).toMatch(/^error: the token is not a valid Biscuit: its bytes do not decode as a Biscuit \(invalid tag value: 0\)$/m);
    for (const run of [signed, junk]) expect(run.stderr).not.toMatch(noLibraryJson);
  });

  it('no input makes the wording fall back to library JSON', () => {
    const root = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519).getPublicKey();
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPabcdefgh0123456789-_=$ '), maxLength: 120 }), (text) => {
        try {
          biscuit.Biscuit.fromBase64(text, root);
        } catch (error) {
          expect(biscuitErrorText(error)).not.toMatch(noLibraryJson);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('token attenuate --bind-cert', () => {
  it('refuses to bind a bound token to another certificate without the delegation key, and says what to do', async () => {
    await gatehouse(['token', 'mint', '--key', 'certs/token-root.key', '--user', 'alice', '--bind-cert', alice.certPath, '--delegable', '--out', 'alice.token']);
    await gatehouse(['token', 'mint', '--key', 'certs/token-root.key', '--user', 'carol', '--bind-cn', 'carol', '--out', 'carol.token']);
    const lent = await gatehouse(['token', 'attenuate', '--token-file', 'alice.token', '--bind-cert', bob.certPath, '--ttl', '1h']);
    expect(lent.stderr).toMatch(/^error: the token is already bound to another certificate \(sha256:[0-9a-f]{64}\): .*no certificate can use; .*--delegation-key FILE\)$/m);
    expect(lent.stdout).toBe('');
    expect(lent.code).toBe(1);
    const notDelegable = await gatehouse(['token', 'attenuate', '--token-file', 'carol.token', '--bind-cn', 'dave', '--ttl', '1h']);
    expect(notDelegable.stderr).toMatch(/already bound to another common name \(carol\).*only a token minted with --delegable can be lent/);
    expect(notDelegable.code).toBe(1);
  });

  it('still binds an unbound token, narrows to the same holder, and delegates with the key; the loan works for bob', async () => {
    await gatehouse(['token', 'mint', '--key', 'certs/token-root.key', '--user', 'erin', '--unbound', '--out', 'erin.token']);
    expect((await gatehouse(['token', 'attenuate', '--token-file', 'erin.token', '--bind-cert', bob.certPath])).code).toBe(0);
    expect((await gatehouse(['token', 'attenuate', '--token-file', 'alice.token', '--bind-cert', alice.certPath, '--ttl', '1h'])).code).toBe(0);
    const loan = await gatehouse(['token', 'attenuate', '--token-file', 'alice.token', '--delegation-key', 'alice.token.delegation.key', '--bind-cert', bob.certPath, '--ttl', '1h', '--out', 'bob.token']);
    expect(loan.code, loan.stderr).toBe(0);
    // bob narrowing his loan to himself is no contradiction.
    const narrowed = await gatehouse(['token', 'attenuate', '--token-file', 'bob.token', '--bind-cert', bob.certPath, '--method', 'GET']);
    expect(narrowed.code, narrowed.stderr).toBe(0);
    const reply = await curl(h, '/r/loan', { client: bob, token: narrowed.stdout.trim() });
    expect(reply.status).not.toBe(401);
    expect(reply.status).not.toBe(403);
  });
});
