// Browser sign-in's token work, run inside an engine worker: verifying a token for a certificate and
// minting the session token cost biscuit-wasm memory that is never returned, so they happen where it is.
import type { TrustedSigners } from '../../token/signers.ts';
import { mintSessionToken, verifyForCertificate } from '../../session/sessionToken.ts';
import type { SessionResult, SessionWork } from './workerProtocol.ts';

/** Runs one piece of sign-in work with this worker's trusted signers and revocation list. */
export function runSessionWork(work: SessionWork, signers: TrustedSigners, isRevoked: (ids: readonly string[]) => boolean): SessionResult {
  if (work.op === 'verify') {
    return { op: 'verify', check: verifyForCertificate(work.token, signers, work.identity, work.sourceIp, isRevoked, new Date(work.now)) };
  }
  return { op: 'mint', minted: mintSessionToken(work.token, signers, work.fingerprint, new Date(work.expiresAt), work.host) };
}
