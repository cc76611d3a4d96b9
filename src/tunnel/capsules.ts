// The HTTP capsule protocol (RFC 9297) that CONNECT-UDP (RFC 9298) carries datagrams in, for both roles:
// QUIC variable-length integers (RFC 9000 §16), capsules read incrementally from a byte stream, DATAGRAM capsules.

/** RFC 9297 §3.5: the DATAGRAM capsule type; every other type is read past and ignored (RFC 9297 §3.2). */
export const DATAGRAM_CAPSULE = 0x00;
/** RFC 9298 §4: context ID 0 carries a whole UDP payload; other contexts belong to extensions we do not speak. */
export const UDP_PAYLOAD_CONTEXT = 0;
/** The largest value a QUIC variable-length integer holds is 2^62-1; JavaScript numbers are exact to 2^53-1. */
const MAX_EXACT = Number.MAX_SAFE_INTEGER;

export type VarintRead = { ok: true; value: number; length: number } | { ok: false; need: number } | { ok: false; invalid: string };

/** Bytes a value takes encoded (the shortest form, as senders should use). */
export function varintLength(value: number): 1 | 2 | 4 | 8 {
  if (value < 0x40) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x40000000) return 4;
  return 8;
}

/** Writes `value` (a non-negative integer up to 2^53-1) at `offset`; returns the offset after it. */
export function writeVarint(target: Buffer, offset: number, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a variable-length integer: ${value}`);
  const length = varintLength(value);
  if (length === 1) target[offset] = value;
  else if (length === 2) target.writeUInt16BE(0x4000 | value, offset);
  else if (length === 4) target.writeUInt32BE((0x80000000 | value) >>> 0, offset);
  else {
    // 2^62 > 2^53: the high word carries the prefix 0b11 and the bits above 2^32.
    target.writeUInt32BE((0xc0000000 | Math.floor(value / 2 ** 32)) >>> 0, offset);
    target.writeUInt32BE(value % 2 ** 32, offset + 4);
  }
  return offset + length;
}

export function encodeVarint(value: number): Buffer {
  const out = Buffer.allocUnsafe(varintLength(value));
  writeVarint(out, 0, value);
  return out;
}

/** Reads one integer at `offset`: its value and length, how many more bytes it needs, or why it is unusable. */
export function readVarint(source: Buffer, offset: number): VarintRead {
  if (offset >= source.length) return { ok: false, need: 1 };
  const first = source[offset] as number;
  const length = 1 << (first >> 6);
  if (source.length - offset < length) return { ok: false, need: length - (source.length - offset) };
  if (length === 1) return { ok: true, value: first & 0x3f, length };
  if (length === 2) return { ok: true, value: source.readUInt16BE(offset) & 0x3fff, length };
  if (length === 4) return { ok: true, value: (source.readUInt32BE(offset) & 0x3fffffff) >>> 0, length };
  const value = (source.readUInt32BE(offset) & 0x3fffffff) * 2 ** 32 + source.readUInt32BE(offset + 4);
  if (value > MAX_EXACT) return { ok: false, invalid: 'a variable-length integer above 2^53-1' };
  return { ok: true, value, length };
}

export interface Capsule {
  type: number;
  value: Buffer;
}

/** One capsule on the wire: type, length, value. */
export function encodeCapsule(type: number, value: Buffer): Buffer {
  const out = Buffer.allocUnsafe(varintLength(type) + varintLength(value.length) + value.length);
  const at = writeVarint(out, writeVarint(out, 0, type), value.length);
  value.copy(out, at);
  return out;
}

/** A DATAGRAM capsule carrying one UDP payload (context ID 0). */
export function datagramCapsule(payload: Buffer): Buffer {
  const value = Buffer.allocUnsafe(1 + payload.length);
  value[0] = UDP_PAYLOAD_CONTEXT;
  payload.copy(value, 1);
  return encodeCapsule(DATAGRAM_CAPSULE, value);
}

/** The UDP payload of a DATAGRAM capsule's value, or undefined for another context (dropped, RFC 9298 §4). */
export function udpPayloadOf(value: Buffer): { ok: true; payload: Buffer | undefined } | { ok: false; invalid: string } {
  const context = readVarint(value, 0);
  if (!context.ok) return { ok: false, invalid: 'a DATAGRAM capsule without a context ID' };
  return { ok: true, payload: context.value === UDP_PAYLOAD_CONTEXT ? value.subarray(context.length) : undefined };
}

export type CapsuleRead = { ok: true; capsules: Capsule[] } | { ok: false; invalid: string };

/**
 * Reads capsules from a byte stream in whatever chunks it arrives: complete capsules come out, a partial one
 * waits for the rest. A capsule longer than `maxCapsuleBytes` is refused before its value is buffered, so a
 * peer cannot make the reader hold more than one bounded capsule.
 */
export class CapsuleReader {
  readonly #maxCapsuleBytes: number;
  #pending: Buffer = Buffer.alloc(0);
  #failed: string | undefined;

  constructor(maxCapsuleBytes: number) {
    this.#maxCapsuleBytes = maxCapsuleBytes;
  }

  /** Bytes held of a capsule not yet complete. */
  get pendingBytes(): number {
    return this.#pending.length;
  }

  push(chunk: Buffer): CapsuleRead {
    if (this.#failed !== undefined) return { ok: false, invalid: this.#failed };
    const data = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const capsules: Capsule[] = [];
    let at = 0;
    for (;;) {
      const type = readVarint(data, at);
      if (!type.ok) {
        if ('invalid' in type) return this.#fail(type.invalid);
        break;
      }
      const length = readVarint(data, at + type.length);
      if (!length.ok) {
        if ('invalid' in length) return this.#fail(length.invalid);
        break;
      }
      if (length.value > this.#maxCapsuleBytes) return this.#fail(`a capsule of ${length.value} bytes (at most ${this.#maxCapsuleBytes})`);
      const start = at + type.length + length.length;
      if (data.length - start < length.value) break;
      // Values are views into the chunks read: a caller that reuses its read buffer copies them first.
      capsules.push({ type: type.value, value: data.subarray(start, start + length.value) });
      at = start + length.value;
    }
    this.#pending = at === data.length ? Buffer.alloc(0) : Buffer.from(data.subarray(at));
    return { ok: true, capsules };
  }

  #fail(reason: string): CapsuleRead {
    this.#failed = reason;
    this.#pending = Buffer.alloc(0);
    return { ok: false, invalid: reason };
  }
}
