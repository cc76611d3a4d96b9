// A device login's handle is the login itself, sealed (AES-256-GCM) with a key derived from the issuer's key:
// any process of a `serve --processes` group, or any instance of a cluster, running the same issuer can poll it,
// and only the gateway can read it (the IdP's device code travels inside, never readable by the client).
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import type { IssueRequest } from '../issuer/claimGrant.ts';

/** What a handle carries: enough to poll the IdP and to mint for the certificate that started the login. */
export interface SealedLogin {
  deviceCode: string;
  /** `sha256:<hex>` of the certificate that started it. */
  fingerprint: string;
  request: IssueRequest;
  delegationKey?: string;
  /** ms since the epoch: the IdP's device code ends then. */
  expiresAt: number;
  /** The IdP's poll interval in seconds. */
  interval: number;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The sealing key of an issuer key (its `ed25519-private/<hex>` text): a new issuer key makes older handles unknown. */
export function loginSealKey(issuerPrivateKey: string): Buffer {
  return Buffer.from(hkdfSync('sha256', issuerPrivateKey, '', 'gatehouse device login v1', 32));
}

export function sealLogin(key: Buffer, login: SealedLogin): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([cipher.update(JSON.stringify(login), 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
}

const isNames = (v: unknown): v is string[] | undefined => v === undefined || (Array.isArray(v) && v.every((n) => typeof n === 'string'));

/** The login a handle seals, or undefined for anything this key did not seal (forged, damaged, another issuer key's). */
export function openLogin(key: Buffer, handle: string): SealedLogin | undefined {
  const bytes = Buffer.from(handle, 'base64url');
  if (bytes.length <= IV_BYTES + TAG_BYTES) return undefined;
  let value: unknown;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, IV_BYTES));
    decipher.setAuthTag(bytes.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    value = JSON.parse(Buffer.concat([decipher.update(bytes.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8'));
  } catch {
    return undefined;
  }
  // Sealed by this gateway, so well formed; checked anyway, as everything read from the wire is.
  const v = value as Partial<SealedLogin> | null;
  if (v === null || typeof v !== 'object' || typeof v.deviceCode !== 'string' || typeof v.fingerprint !== 'string' || typeof v.expiresAt !== 'number' || typeof v.interval !== 'number') return undefined;
  const request = v.request;
  if (request === null || typeof request !== 'object' || !isNames(request.groups) || !isNames(request.routes) || !(request.ttlSeconds === undefined || typeof request.ttlSeconds === 'number')) return undefined;
  if (v.delegationKey !== undefined && typeof v.delegationKey !== 'string') return undefined;
  return { deviceCode: v.deviceCode, fingerprint: v.fingerprint, request, expiresAt: v.expiresAt, interval: v.interval, ...(v.delegationKey !== undefined && { delegationKey: v.delegationKey }) };
}
