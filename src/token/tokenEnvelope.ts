// Reads a token's outer protobuf envelope WITHOUT checking signatures: block count and revocation
// ids (each block's signature). Only for inspection and revocation when no root key is at hand.
import { cleanTokenText } from './parseToken.ts';
import { fail, ok, type TokenResult } from './tokenErrors.ts';

export interface TokenEnvelope {
  blockCount: number;
  /** Hex, authority block first; equal to what biscuit reports once the token verifies. */
  revocationIds: string[];
  rootKeyId?: number;
}

interface Field {
  field: number;
  value: bigint | Uint8Array;
}

function readVarint(bytes: Uint8Array, start: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  let position = start;
  for (;;) {
    const byte = bytes[position];
    if (byte === undefined || shift > 63n) throw new Error('truncated varint');
    position += 1;
    value |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
    if ((byte & 0x80) === 0) return { value, next: position };
  }
}

/** The fields of one protobuf message; only the wire types Biscuit's envelope uses. */
function readFields(bytes: Uint8Array): Field[] {
  const fields: Field[] = [];
  let position = 0;
  while (position < bytes.length) {
    const key = readVarint(bytes, position);
    position = key.next;
    const field = Number(key.value >> 3n);
    const wireType = Number(key.value & 7n);
    if (wireType === 0) {
      const value = readVarint(bytes, position);
      fields.push({ field, value: value.value });
      position = value.next;
    } else if (wireType === 2) {
      const length = readVarint(bytes, position);
      const end = length.next + Number(length.value);
      if (end > bytes.length) throw new Error('truncated field');
      fields.push({ field, value: bytes.subarray(length.next, end) });
      position = end;
    } else {
      throw new Error(`unexpected wire type ${wireType}`);
    }
  }
  return fields;
}

function signatureOf(signedBlock: Uint8Array): string {
  // SignedBlock { bytes block = 1; PublicKey nextKey = 2; bytes signature = 3; ... }
  const signature = readFields(signedBlock).find((f) => f.field === 3)?.value;
  if (!(signature instanceof Uint8Array) || signature.length === 0) throw new Error('block without signature');
  return Buffer.from(signature).toString('hex');
}

export function readTokenEnvelope(text: string): TokenResult<TokenEnvelope> {
  const token = cleanTokenText(text);
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(token)) return fail('invalid-token', 'the token is not base64url text');
  try {
    // Biscuit { uint32 rootKeyId = 1; SignedBlock authority = 2; repeated SignedBlock blocks = 3; Proof proof = 4; }
    const fields = readFields(Buffer.from(token, 'base64url'));
    const authority = fields.find((f) => f.field === 2)?.value;
    if (!(authority instanceof Uint8Array)) throw new Error('no authority block');
    const blocks = fields.filter((f) => f.field === 3).map((f) => f.value);
    const revocationIds = [authority, ...blocks].map((block) => {
      if (!(block instanceof Uint8Array)) throw new Error('malformed block');
      return signatureOf(block);
    });
    const rootKeyId = fields.find((f) => f.field === 1)?.value;
    return ok({
      blockCount: revocationIds.length,
      revocationIds,
      ...(typeof rootKeyId === 'bigint' ? { rootKeyId: Number(rootKeyId) } : {}),
    });
  } catch (error) {
    return fail('invalid-token', `the token is not a Biscuit: ${(error as Error).message}`);
  }
}
