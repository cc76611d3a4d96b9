// Device logins: the handle is the login sealed with the issuer's key (any process or instance of the issuer
// opens it, nobody else reads or forges it); the poll state kept per process is bounded per certificate and in all.
import { describe, expect, it } from 'vitest';
import { pendingDevices } from '../src/login/pendingDevices.ts';
import { loginSealKey, openLogin, sealLogin, type SealedLogin } from '../src/login/sealedLogin.ts';

const key = loginSealKey(`ed25519-private/${'11'.repeat(32)}`);
const login = (fingerprint: string, expiresAt = 600_000): SealedLogin => ({ deviceCode: 'secret-device-code', fingerprint, request: { groups: ['hpc'], ttlSeconds: 60 }, expiresAt, interval: 5 });

describe('sealed device logins', () => {
  it('open with the key that sealed them, and with no other; the device code is not readable in the handle', () => {
    const handle = sealLogin(key, login('sha256:alice'));
    expect(handle).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(handle, 'base64url').toString('latin1')).not.toContain('secret-device-code');
    expect(openLogin(key, handle)).toEqual(login('sha256:alice'));
    expect(openLogin(loginSealKey(`ed25519-private/${'22'.repeat(32)}`), handle)).toBeUndefined();
    const bytes = Buffer.from(handle, 'base64url');
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 1, bytes.length - 1);
    expect(openLogin(key, bytes.toString('base64url'))).toBeUndefined();
    expect(openLogin(key, 'AAAA')).toBeUndefined();
    expect(sealLogin(key, login('sha256:alice'))).not.toBe(handle);
  });
});

describe('pending device logins', () => {
  it('are found only with the certificate that started them; one started here asks the IdP after an interval, one taken up at once', () => {
    const pending = pendingDevices(() => ({ maxPending: 10, maxPendingPerCertificate: 2 }));
    const { pending: started } = pending.keep('h1', login('sha256:alice'), 1000, true);
    expect(started.ref).toMatch(/^[0-9a-f]{16}$/);
    expect(pending.get('h1', 'sha256:bob')).toBeUndefined();
    expect(pending.get('h1', 'sha256:alice')).toBe(started);
    expect(started).toMatchObject({ clientInterval: 5, providerInterval: 5, nextProviderPoll: 6000, finished: false });
    expect(pending.keep('h2', login('sha256:alice'), 1000, false).pending.nextProviderPoll).toBe(1000);
  });

  it("drop a certificate's own oldest beyond its limit, the least recently used beyond the total, the expired first", () => {
    const pending = pendingDevices(() => ({ maxPending: 3, maxPendingPerCertificate: 2 }));
    pending.keep('a1', login('sha256:a'), 0, true);
    pending.keep('a2', login('sha256:a'), 0, true);
    expect(pending.keep('a3', login('sha256:a'), 0, true).dropped).toBe(1);
    expect(pending.get('a1', 'sha256:a')).toBeUndefined();
    pending.keep('b1', login('sha256:b'), 0, true);
    pending.get('a2', 'sha256:a');
    expect(pending.keep('c1', login('sha256:c', 100), 0, true).dropped).toBe(1);
    expect(pending.get('a3', 'sha256:a')).toBeUndefined();
    expect(pending.keep('d1', login('sha256:d'), 200, true).dropped).toBe(1);
    expect(pending.get('c1', 'sha256:c')).toBeUndefined();
    expect(pending.size).toBe(3);
  });
});
