// Reads a token's outer protobuf envelope WITHOUT checking signatures: block count and revocation
// ids (each block's signature). Only for inspection and revocation when no root key is at hand.
import { cleanTokenText } from './parseToken.ts';
import { fail, ok, type TokenResult } from './tokenErrors.ts';

export interface TokenEnvelope {
  blockCount: number;
  /** Hex, authority block first; equal to what biscuit reports once the token verifies. */
  revocationIds: string[];
  /**
   * Per block, the key that signed it as a third-party block (`ed25519/<hex>`), or undefined for
   * the authority block and ordinary attenuation blocks. Trust it only once the token verified.
   */
  externalKeys: (string | undefined)[];
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

const ALGORITHMS = ['ed25519', 'secp256r1'];

function externalKeyOf(signedBlock: Uint8Array): string | undefined {
  // SignedBlock { ...; ExternalSignature externalSignature = 4; }
  // ExternalSignature { bytes signature = 1; PublicKey publicKey = 2; } PublicKey { Algorithm algorithm = 1; bytes key = 2; }
  const external = readFields(signedBlock).find((f) => f.field === 4)?.value;
  if (!(external instanceof Uint8Array)) return undefined;
  const publicKey = readFields(external).find((f) => f.field === 2)?.value;
  if (!(publicKey instanceof Uint8Array)) throw new Error('external signature without a public key');
  const fields = readFields(publicKey);
  const algorithm = fields.find((f) => f.field === 1)?.value;
  const key = fields.find((f) => f.field === 2)?.value;
  if (!(key instanceof Uint8Array)) throw new Error('external public key without key bytes');
  const name = ALGORITHMS[typeof algorithm === 'bigint' ? Number(algorithm) : 0] ?? `algorithm-${String(algorithm)}`;
  return `${name}/${Buffer.from(key).toString('hex')}`;
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
    const signedBlocks = [authority, ...blocks].map((block) => {
      if (!(block instanceof Uint8Array)) throw new Error('malformed block');
      return block;
    });
    const revocationIds = signedBlocks.map(signatureOf);
    const externalKeys = signedBlocks.map((block, index) => (index === 0 ? undefined : externalKeyOf(block)));
    const rootKeyId = fields.find((f) => f.field === 1)?.value;
    return ok({
      blockCount: revocationIds.length,
      revocationIds,
      externalKeys,
      ...(typeof rootKeyId === 'bigint' ? { rootKeyId: Number(rootKeyId) } : {}),
    });
  } catch (error) {
    return fail('invalid-token', `the token is not a Biscuit: ${(error as Error).message}`);
  }
}
