// What the client says when the gateway refuses a tunnel: the status in words, the gateway's reason, and
// a hint that fits (an expired or revoked token needs a new token, not a different route).
import { describe, expect, it } from 'vitest';
import { describeFailure } from '../src/client/tunnelFailure.ts';

const refused = (status: number, reason: string) => describeFailure({ kind: 'refused', status, reason }, 'gw.example:443', 'jupyter');

describe('describeFailure', () => {
  it('says a 401 is a missing, malformed or foreign token, not an expired or revoked one', () => {
    expect(refused(401, 'invalid token')).toBe('gw.example:443 refused route jupyter: 401 not authenticated (token missing, malformed or not signed by the site): "invalid token" — check the token file or GATEHOUSE_TOKEN');
  });

  it('asks for a new token when the 403 says the token expired or was revoked', () => {
    expect(refused(403, 'token revoked')).toMatch(/403 access denied: "token revoked" — ask for a new token$/);
    expect(refused(403, 'token expired')).toMatch(/— ask for a new token$/);
  });

  it('keeps the policy hint for other denials', () => {
    expect(refused(403, 'no policy matched')).toMatch(/— the token does not allow this route for this certificate$/);
  });
});
