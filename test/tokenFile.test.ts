// The token file `gatehouse login` writes and tunnel/publish read: where it lives, its modes, its two
// formats, atomic replacement, the renewal lock, and when a renewal is due.
import { mkdtempSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultTokenFile } from '../src/client/clientSettings.ts';
import { lockTokenFile, readTokenFile, writeTokenFile, type LoginFacts } from '../src/client/tokenFile.ts';
import { keepTokenFresh, renewalDelay } from '../src/client/tokenRenewal.ts';
import { readTokenInput } from '../src/token/tokenInput.ts';
import { makeTestPki } from './support/pki.ts';

const facts = (obtainedAt: string, expiresAt: string): LoginFacts => ({ gateway: 'https://gw.example:8443', user: 'alice', obtainedAt, expiresAt, refreshUntil: '2026-12-06T00:00:00.000Z', revocationId: 'ab'.repeat(32) });

describe('token file', () => {
  it('lives in $XDG_CONFIG_HOME/gatehouse (an absolute one), else ~/.config/gatehouse', () => {
    expect(defaultTokenFile({ HOME: '/home/alice' })).toBe('/home/alice/.config/gatehouse/token');
    expect(defaultTokenFile({ HOME: '/home/alice', XDG_CONFIG_HOME: '/xdg' })).toBe('/xdg/gatehouse/token');
    expect(defaultTokenFile({ HOME: '/home/alice', XDG_CONFIG_HOME: 'relative' })).toBe('/home/alice/.config/gatehouse/token');
  });

  it('is written 0600 in a 0700 directory whatever the umask, replaced by rename, no temp file left', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gatehouse-tokenfile-')), 'config', 'gatehouse', 'token');
    const umask = process.umask(0);
    try {
      writeTokenFile(file, { token: 'first.token', login: facts('2026-12-05T00:00:00.000Z', '2026-12-05T00:01:00.000Z') });
    } finally {
      process.umask(umask);
    }
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
    const before = statSync(file).ino;
    writeTokenFile(file, { token: 'second.token' });
    expect(statSync(file).ino).not.toBe(before);
    expect(readdirSync(join(file, '..'))).toEqual(['token']);
    expect(readTokenFile(file)).toEqual({ ok: true, stored: { token: 'second.token' } });
  });

  it('reads a token minted by hand (one line) and the JSON object login writes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tokenfile-'));
    writeFileSync(join(dir, 'plain'), 'Bearer abc-DEF_123=\n', { mode: 0o600 });
    expect(readTokenFile(join(dir, 'plain'))).toEqual({ ok: true, stored: { token: 'abc-DEF_123=' } });
    const login = facts('2026-12-05T00:00:00.000Z', '2026-12-05T00:01:00.000Z');
    writeTokenFile(join(dir, 'login'), { token: 'abc', login });
    expect(readTokenFile(join(dir, 'login'))).toEqual({ ok: true, stored: { token: 'abc', login } });
    writeFileSync(join(dir, 'broken'), '{"token": 5}', { mode: 0o600 });
    expect(readTokenFile(join(dir, 'broken'))).toMatchObject({ ok: false, error: `token file ${join(dir, 'broken')} holds no "token"` });
  });

  it('gives the token tools (attenuate, inspect, explain) the token inside the file login wrote', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tokenfile-'));
    writeTokenFile(join(dir, 'token'), { token: 'En0KEwoFYWxpY2UYAyIICgYIBBIC', login: facts('2026-12-05T00:00:00.000Z', '2026-12-05T00:01:00.000Z') });
    expect(await readTokenInput({ tokenFile: join(dir, 'token') })).toEqual({ ok: true, value: 'En0KEwoFYWxpY2UYAyIICgYIBBIC' });
    writeFileSync(join(dir, 'broken'), '{"user": "alice"}\n');
    expect(await readTokenInput({ tokenFile: join(dir, 'broken') })).toMatchObject({ ok: false, error: { message: 'the token holds no "token"' } });
  });

  it('lets one process at a time renew; a lock left by a dead process is taken over', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gatehouse-tokenfile-')), 'token');
    const release = lockTokenFile(file);
    expect(release).toBeTypeOf('function');
    expect(lockTokenFile(file)).toBeUndefined();
    release?.();
    const again = lockTokenFile(file);
    expect(again).toBeTypeOf('function');
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${file}.lock`, old, old);
    expect(lockTokenFile(file)).toBeTypeOf('function');
  });
});

describe('renewal', () => {
  it('is due at two thirds of the life, at once when little is left, never within 5 s of the end', () => {
    const obtained = Date.parse('2026-12-05T00:00:00.000Z');
    const login = facts('2026-12-05T00:00:00.000Z', '2026-12-05T00:01:00.000Z');
    expect(renewalDelay(login, obtained)).toBe(40_000);
    expect(renewalDelay(login, obtained + 50_000)).toBe(0);
    const twelveHours = facts('2026-12-05T00:00:00.000Z', '2026-12-05T12:00:00.000Z');
    expect(renewalDelay(twelveHours, obtained)).toBe(8 * 3600_000);
    const short = facts('2026-12-05T00:00:00.000Z', '2026-12-05T00:00:06.000Z');
    expect(renewalDelay(short, obtained)).toBe(1_000);
  });

  it('is tried again while the token lasts when the gateway cannot be asked, saying so, and never ends the command', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-renewal-'));
    const pki = await makeTestPki(join(dir, 'certs'));
    const alice = await pki.client('alice');
    // A loopback port nothing listens on any more.
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    await new Promise((resolve) => server.close(resolve));
    const now = Date.now();
    const login = facts(new Date(now - 25_000).toISOString(), new Date(now + 10_000).toISOString());
    const file = join(dir, 'token');
    writeTokenFile(file, { token: 'abc', login });
    const lines: string[] = [];
    const keeper = keepTokenFresh({ endpoint: { host: '127.0.0.1', port, label: `https://127.0.0.1:${port}`, cert: Buffer.from(alice.cert), key: Buffer.from(alice.key), token: 'abc' }, file, stored: { token: 'abc', login }, say: (line) => lines.push(line) });
    try {
      for (let i = 0; i < 100 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(lines[0]).toMatch(new RegExp(`^cannot renew the token now \\(cannot connect to https://127\\.0\\.0\\.1:${port}: connection refused \\(is the gateway running on that port\\?\\)\\); trying again in \\d+ s$`));
      expect(keeper.holder.current).toBe('abc');
    } finally {
      keeper.stop();
    }
  });
});
