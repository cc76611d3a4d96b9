// Runs one throwaway authorization through the engine before the first real request: biscuit-wasm
// compiles its code lazily, and a cold first call (~25 ms here) would trip a route's time limit.
import { Biscuit, BiscuitBuilder, KeyPair, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import { evaluateToken } from '../policy/evaluateToken.ts';
import type { Decision } from '../types.ts';

/** Mints, parses and authorizes a token shaped like a real one; returns the decision as a self-test. */
export function warmUpEngine(): Decision {
  const key = new KeyPair(SignatureAlgorithm.Ed25519);
  const builder = new BiscuitBuilder();
  builder.addCode('user("warm-up"); group("warm-up"); check if time($t), $t <= 2100-01-01T00:00:00Z;');
  const minted = builder.build(key.getPrivateKey());
  const publicKey = key.getPublicKey();
  const token = Biscuit.fromBase64(minted.toBase64(), publicKey);
  try {
    token.getBlockSource(0);
    return evaluateToken(
      token,
      { name: 'warm-up', policy: 'deny if route("never");\nallow if user($u), route("warm-up");', limits: { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 1_000_000 } },
      {
        time: new Date(),
        route: 'warm-up',
        protocol: 'http',
        method: 'GET',
        path: '/',
        params: { user: 'warm-up' },
        sourceIp: '127.0.0.1',
        client: { cn: 'warm-up', subject: 'CN=warm-up', issuer: 'CN=warm-up', serial: '01', fingerprint: 'sha256:00', sans: [], notAfter: '' },
      },
    );
  } finally {
    token.free();
    minted.free();
    publicKey.free();
    key.free();
  }
}
