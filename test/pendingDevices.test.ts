// The device logins waiting for approval: found only by the certificate that started them, bounded per
// certificate (its own oldest dropped) and in all (the least recently used dropped).
import { describe, expect, it } from 'vitest';
import type { DeviceLogin } from '../src/issuer/relyingParty.ts';
import { pendingDevices } from '../src/login/pendingDevices.ts';

const device = (interval?: number): DeviceLogin => ({
  userCode: 'ABCD-EFGH',
  verificationUri: 'https://idp.test/device',
  expiresIn: 600,
  response: { device_code: 'secret-device-code', user_code: 'ABCD-EFGH', verification_uri: 'https://idp.test/device', expires_in: 600, ...(interval !== undefined && { interval }) },
});
const start = (fingerprint: string, now = 0) => ({ fingerprint, device: device(), request: {}, now });

describe('pending device logins', () => {
  it('are found by their handle only with the certificate that started them', () => {
    const pending = pendingDevices(() => ({ maxPending: 10, maxPendingPerCertificate: 2 }));
    const { pending: login } = pending.add(start('sha256:alice'));
    expect(login.handle).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(login.ref).not.toContain(login.handle);
    expect(pending.get(login.handle, 'sha256:bob')).toBeUndefined();
    expect(pending.get(login.handle, 'sha256:alice')).toBe(login);
    expect(login).toMatchObject({ clientInterval: 5, providerInterval: 5, nextProviderPoll: 5000, expiresAt: 600_000 });
  });

  it("drop a certificate's own oldest login beyond its limit, and the least recently used beyond the total", () => {
    const pending = pendingDevices(() => ({ maxPending: 3, maxPendingPerCertificate: 2 }));
    const a1 = pending.add(start('sha256:a')).pending;
    const a2 = pending.add(start('sha256:a')).pending;
    const a3 = pending.add(start('sha256:a'));
    expect(a3.dropped).toEqual([a1.handle]);
    const b1 = pending.add(start('sha256:b')).pending;
    expect(pending.size).toBe(3);
    // a2 used lately: a3 is now the least recently used of all.
    pending.get(a2.handle, 'sha256:a');
    const c1 = pending.add(start('sha256:c'));
    expect(c1.dropped).toEqual([a3.pending.handle]);
    expect(pending.get(b1.handle, 'sha256:b')).toBe(b1);
    // Expired logins go first when the table is full.
    const late = pending.add(start('sha256:d', 700_000));
    expect(late.dropped.sort()).toEqual([a2.handle, b1.handle, c1.pending.handle].sort());
  });
});
