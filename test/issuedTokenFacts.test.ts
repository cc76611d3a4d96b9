// What refresh reads back from an issued token's authority block (printed by biscuit-wasm): the login, the
// IdP identity, routes, binding and delegation key; a line it would not carry over refuses the refresh.
import { describe, expect, it } from 'vitest';
import { issuedTokenFacts } from '../src/login/issuedTokenFacts.ts';
import { biscuit } from '../src/token/biscuitModule.ts';
import { inspectToken } from '../src/token/inspectToken.ts';
import { mintToken, type MintOptions } from '../src/token/mintToken.ts';
import { idpOfAuthority } from '../src/token/issuedBy.ts';

const key = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);
const delegation = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519).getPublicKey().toString();
const fingerprint = `sha256:${'ab'.repeat(32)}`;
const login = { id: '0123456789abcdef0123456789abcdef', time: new Date('2026-12-05T04:00:00Z'), lifetimeSeconds: 3600 };

function authoritySource(options: Partial<MintOptions>): string {
  const minted = mintToken({ privateKey: key.getPrivateKey(), user: 'alice', groups: ['hpc'], ttlSeconds: 3600, clientFingerprint: fingerprint, idp: { issuer: 'https://idp.test', subject: 'sub-1' }, login, rootKeyId: 1, ...options });
  if (!minted.ok) throw new Error(minted.error.message);
  const inspected = inspectToken(minted.value, key.getPublicKey());
  if (!inspected.ok) throw new Error(inspected.error.message);
  return inspected.value.blocks[0]?.source ?? '';
}

describe('issued token facts', () => {
  it('reads the login, the IdP identity, routes, binding and delegation key back', () => {
    const source = authoritySource({ routes: ['notebook', 'db'], publish: ['*'], delegationKey: delegation, login: { ...login, idpSessionEnd: new Date('2026-12-05T12:00:00Z') } });
    expect(issuedTokenFacts(source)).toEqual({
      ok: true,
      facts: { idp: { issuer: 'https://idp.test', subject: 'sub-1' }, login: { ...login, idpSessionEnd: new Date('2026-12-05T12:00:00Z') }, fingerprint, delegationKey: delegation, routes: ['db', 'notebook'] },
    });
  });

  it('refuses a token that is not a login token, or holds a restriction refresh would drop', () => {
    expect(issuedTokenFacts(authoritySource({ login: undefined })).ok).toBe(false);
    const source = authoritySource({});
    expect(issuedTokenFacts(`${source}\ncheck if method($m), ["GET"].contains($m);`)).toMatchObject({ ok: false, reason: expect.stringContaining('a line no issued token has') });
    expect(issuedTokenFacts(`${source}\nlogin_id("ffffffffffffffffffffffffffffffff");`)).toMatchObject({ ok: false });
  });

  it('reads no IdP identity from a subject holding a quote (strings print unescaped)', () => {
    const source = authoritySource({ idp: { issuer: 'https://idp.test', subject: 'a"); user("root' } });
    expect(idpOfAuthority(source)).toBeUndefined();
    expect(issuedTokenFacts(source).ok).toBe(false);
  });
});
