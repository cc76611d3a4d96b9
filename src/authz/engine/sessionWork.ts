// Browser sign-in's token work, run inside an engine worker: verifying a token for a certificate and
// minting the session token cost biscuit-wasm memory that is never returned, so they happen where it is.
import type { PublicKey } from '@biscuit-auth/biscuit-wasm';
import { mintSessionToken, verifyForCertificate } from '../../session/sessionToken.ts';
import type { SessionResult, SessionWork } from './workerProtocol.ts';

/** Runs one piece of sign-in work with this worker's root key and revocation list. */
export function runSessionWork(work: SessionWork, rootKey: PublicKey, isRevoked: (ids: readonly string[]) => boolean): SessionResult {
  if (work.op === 'verify') {
    return { op: 'verify', check: verifyForCertificate(work.token, rootKey, work.identity, work.sourceIp, isRevoked, new Date(work.now)) };
  }
  return { op: 'mint', minted: mintSessionToken(work.token, rootKey, work.fingerprint, new Date(work.expiresAt), work.host) };
}
