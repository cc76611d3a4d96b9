// The right to publish in the token tooling: what mint and attenuate write, and how the chain of block
// sources is judged (every block must grant the service; only exact grant facts count).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { attenuateToken } from '../src/token/attenuateToken.ts';
import { inspectToken } from '../src/token/inspectToken.ts';
import { generateRootKey, parsePublicKey, readPrivateKey } from '../src/token/keyFiles.ts';
import { mintToken } from '../src/token/mintToken.ts';
import { grantsIn, publishableServices, publishRightFor } from '../src/token/publishRight.ts';
import type { TokenResult } from '../src/token/tokenErrors.ts';

function value<T>(result: TokenResult<T>): T {
  if (!result.ok) throw new Error(result.error.message);
  return result.value;
}

const keys = generateRootKey();
const keyFile = join(mkdtempSync(join(tmpdir(), 'gatehouse-publish-right-')), 'root.key');
writeFileSync(keyFile, `${keys.privateKey}\n`, { mode: 0o600 });
const privateKey = value(readPrivateKey(keyFile));
const publicKey = value(parsePublicKey(keys.publicKey));
const sourcesOf = (token: string) => value(inspectToken(token, publicKey)).blocks.map((b) => b.source ?? '');

describe('mint and attenuate', () => {
  it('mint --publish writes the grant into the authority block; without it there is none', () => {
    const any = value(mintToken({ privateKey, user: 'alice', publish: ['*'] }));
    expect(grantsIn(sourcesOf(any)[0] ?? '')).toEqual(['*']);
    const two = value(mintToken({ privateKey, user: 'alice', publish: ['web', 'api'] }));
    expect(grantsIn(sourcesOf(two)[0] ?? '')).toEqual(['web', 'api']);
    expect(grantsIn(sourcesOf(value(mintToken({ privateKey, user: 'alice' })))[0] ?? '')).toEqual([]);
    const bad = mintToken({ privateKey, user: 'alice', publish: ['Web/../x'] });
    expect(bad.ok).toBe(false);
  });

  it('attenuate grants again only when asked (--allow-publish, --publish NAME)', () => {
    const token = value(mintToken({ privateKey, user: 'alice', publish: ['*'] }));
    const plain = value(attenuateToken({ token, publicKey, ttlSeconds: 3600 }));
    expect(publishRightFor(sourcesOf(plain), 'web')).toMatchObject({ ok: false, block: 1 });
    const passed = value(attenuateToken({ token, publicKey, ttlSeconds: 3600, allowPublish: true }));
    expect(publishRightFor(sourcesOf(passed), 'web').ok).toBe(true);
    const one = value(attenuateToken({ token, publicKey, publishServices: ['web'] }));
    expect(publishRightFor(sourcesOf(one), 'web').ok).toBe(true);
    expect(publishRightFor(sourcesOf(one), 'api')).toMatchObject({ ok: false, block: 1 });
  });
});

describe('publishRightFor', () => {
  it('needs the authority block to grant it', () => {
    expect(publishRightFor(['user("alice");\n'], 'web')).toMatchObject({ ok: false, block: 0, reason: expect.stringMatching(/carries no right to publish/) });
    expect(publishRightFor(['user("alice");\npublish_right("api");\n'], 'web')).toMatchObject({ ok: false, block: 0, reason: expect.stringMatching(/covers api, not web/) });
  });

  it('needs every later block to grant it; a later block cannot widen an earlier one', () => {
    const authority = 'user("alice");\npublish_right("*");\n';
    expect(publishRightFor([authority, 'check if time($t), $t <= 2100-01-01T00:00:00Z;\n', 'publish_right("*");\n'], 'web')).toMatchObject({ ok: false, block: 1 });
    expect(publishRightFor([authority, 'publish_right("api");\n', 'publish_right("*");\n'], 'web')).toMatchObject({ ok: false, block: 1 });
    expect(publishRightFor([authority, 'publish_right("web");\n', 'publish_right("*");\n'], 'web')).toMatchObject({ ok: true, chain: { blocks: 3 } });
  });

  it('counts only grant facts of the exact form, never rules, checks or other names', () => {
    expect(grantsIn('publish_right($s) <- service($s);\n')).toEqual([]);
    expect(grantsIn('check if publish_right("*");\n')).toEqual([]);
    expect(grantsIn('publish_rights("*");\nxpublish_right("*");\npublish_right("Web");\n')).toEqual([]);
    expect(publishRightFor(['user("alice");\npublish_right("*");\n'], '')).toMatchObject({ ok: false });
  });
});

describe('publishableServices (token inspect)', () => {
  it('is what every block grants', () => {
    expect(publishableServices(['publish_right("*");\n'])).toEqual(['*']);
    expect(publishableServices(['publish_right("*");\n', 'publish_right("web");\npublish_right("api");\n', 'publish_right("*");\n'])).toEqual(['web', 'api']);
    expect(publishableServices(['publish_right("web");\n', 'publish_right("api");\n'])).toEqual([]);
    expect(publishableServices(['publish_right("*");\n', 'check if time($t), $t <= 2100-01-01T00:00:00Z;\n'])).toEqual([]);
    expect(publishableServices(['user("alice");\n'])).toEqual([]);
  });
});
