// The capsule codec of CONNECT-UDP against RFC 9000's variable-length integer examples and, by property,
// against any split of a capsule stream into chunks, unknown capsule types, oversize and malformed input.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CapsuleReader, DATAGRAM_CAPSULE, datagramCapsule, encodeCapsule, encodeVarint, readVarint, udpPayloadOf } from '../src/tunnel/capsules.ts';

describe('QUIC variable-length integers (RFC 9000 §16)', () => {
  it('reads the examples of RFC 9000 appendix A.1, including a non-shortest form', () => {
    const examples: [string, number][] = [
      ['c2197c5eff14e88c', 151288809941952652],
      ['9d7f3e7d', 494878333],
      ['7bbd', 15293],
      ['25', 37],
      ['4025', 37],
    ];
    for (const [hex, value] of examples) {
      const read = readVarint(Buffer.from(hex, 'hex'), 0);
      // 151288809941952652 is above 2^53: refused rather than rounded.
      if (value > Number.MAX_SAFE_INTEGER) expect(read).toEqual({ ok: false, invalid: 'a variable-length integer above 2^53-1' });
      else expect(read).toEqual({ ok: true, value, length: hex.length / 2 });
    }
    expect(encodeVarint(494878333).toString('hex')).toBe('9d7f3e7d');
    expect(encodeVarint(15293).toString('hex')).toBe('7bbd');
    expect(encodeVarint(37).toString('hex')).toBe('25');
  });

  it('round-trips every integer up to 2^53-1 in its shortest form, and says how many bytes a cut one needs', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        const bytes = encodeVarint(n);
        expect(readVarint(bytes, 0)).toEqual({ ok: true, value: n, length: bytes.length });
        expect(bytes.length).toBe(n < 64 ? 1 : n < 16384 ? 2 : n < 2 ** 30 ? 4 : 8);
        // With no byte the length is unknown: one more is needed to learn it.
        expect(readVarint(Buffer.alloc(0), 0)).toEqual({ ok: false, need: 1 });
        for (let cut = 1; cut < bytes.length; cut += 1) expect(readVarint(bytes.subarray(0, cut), 0)).toEqual({ ok: false, need: bytes.length - cut });
      }),
    );
  });
});

const capsule = fc.record({ type: fc.oneof(fc.constant(DATAGRAM_CAPSULE), fc.nat({ max: 2 ** 40 })), value: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) });

describe('capsules (RFC 9297 §3.2)', () => {
  it('reads the same capsules whatever chunks the stream arrives in', () => {
    fc.assert(
      fc.property(fc.array(capsule, { maxLength: 12 }), fc.array(fc.nat({ max: 400 }), { maxLength: 20 }), (capsules, cuts) => {
        const stream = Buffer.concat(capsules.map((c) => encodeCapsule(c.type, c.value)));
        const reader = new CapsuleReader(1024);
        const got: { type: number; value: string }[] = [];
        let at = 0;
        for (const cut of [...cuts.map((c) => Math.min(stream.length, at + c)), stream.length]) {
          const end = Math.max(at, Math.min(cut, stream.length));
          const read = reader.push(stream.subarray(at, end));
          expect(read.ok).toBe(true);
          if (read.ok) got.push(...read.capsules.map((c) => ({ type: c.type, value: c.value.toString('hex') })));
          at = end;
        }
        expect(got).toEqual(capsules.map((c) => ({ type: c.type, value: c.value.toString('hex') })));
        expect(reader.pendingBytes).toBe(0);
      }),
    );
  });

  it('refuses a capsule longer than the bound from its header, before its value arrives, and stays refused', () => {
    const reader = new CapsuleReader(1500);
    const header = Buffer.concat([encodeVarint(DATAGRAM_CAPSULE), encodeVarint(1_000_000)]);
    expect(reader.push(header)).toEqual({ ok: false, invalid: 'a capsule of 1000000 bytes (at most 1500)' });
    expect(reader.pendingBytes).toBe(0);
    expect(reader.push(datagramCapsule(Buffer.from('late'))).ok).toBe(false);
  });

  it('never throws on hostile bytes and never holds more than one bounded capsule', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 30 }), (chunks) => {
        const reader = new CapsuleReader(256);
        for (const chunk of chunks) {
          const read = reader.push(Buffer.from(chunk));
          // A type and a length take at most 16 bytes: what waits is one capsule within the bound.
          expect(reader.pendingBytes).toBeLessThanOrEqual(256 + 16);
          if (!read.ok) expect(read.invalid).toMatch(/^a (capsule of|variable-length)/);
        }
      }),
    );
  });

  it('refuses a length above 2^53-1 instead of misreading it', () => {
    const reader = new CapsuleReader(1500);
    expect(reader.push(Buffer.from('00ffffffffffffffff', 'hex'))).toEqual({ ok: false, invalid: 'a variable-length integer above 2^53-1' });
  });

  it('carries a UDP payload in context 0, and reads another context as nothing to deliver', () => {
    const reader = new CapsuleReader(1500);
    const read = reader.push(Buffer.concat([datagramCapsule(Buffer.from('ping')), encodeCapsule(DATAGRAM_CAPSULE, Buffer.from([0x02, 0x41])), encodeCapsule(0x2a, Buffer.from('unknown'))]));
    if (!read.ok) throw new Error(read.invalid);
    expect(read.capsules.map((c) => c.type)).toEqual([DATAGRAM_CAPSULE, DATAGRAM_CAPSULE, 0x2a]);
    expect(udpPayloadOf(read.capsules[0]!.value)).toEqual({ ok: true, payload: Buffer.from('ping') });
    expect(udpPayloadOf(read.capsules[1]!.value)).toEqual({ ok: true, payload: undefined });
    expect(udpPayloadOf(Buffer.alloc(0))).toEqual({ ok: false, invalid: 'a DATAGRAM capsule without a context ID' });
  });
});
