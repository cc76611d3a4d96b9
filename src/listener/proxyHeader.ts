// Parses the PROXY protocol header (v1 text, v2 binary) a load balancer puts before the client's bytes,
// incrementally: it says "need more", "refuse, because", or the client's address and the header's length.
import { isIPv4, isIPv6 } from 'node:net';

export interface ProxiedAddress {
  ip: string;
  port: number;
}

export type ProxyHeaderResult =
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  /**
   * `source` is absent for a v2 LOCAL command (the balancer's own health check) and for v1 UNKNOWN or
   * an address family the gateway does not carry (UNIX, UDP): the connection's own peer then stands.
   */
  | { kind: 'header'; version: 1 | 2; source?: ProxiedAddress; length: number };

/** v1's longest line, CRLF included (spec 2.1). */
const V1_MAX = 107;
const V1_PREFIX = Buffer.from('PROXY ');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED = 16;
/**
 * Bounds what one connection can make us buffer before TLS. Address blocks are at most 216 bytes (UNIX);
 * the rest is TLVs (ALPN, authority, SSL info), which a balancer keeps small.
 */
export const V2_MAX_LENGTH = 2048;

const decimalPort = /^(0|[1-9][0-9]{0,4})$/;

function port(text: string): number | undefined {
  if (!decimalPort.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

/** True while `buf` could still become `prefix` (or already starts with it). */
function agreesWith(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

function parseV1(buf: Buffer): ProxyHeaderResult {
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? { kind: 'invalid', reason: `PROXY v1 line longer than ${V1_MAX} bytes` } : { kind: 'incomplete' };
  if (end + 2 > V1_MAX) return { kind: 'invalid', reason: `PROXY v1 line longer than ${V1_MAX} bytes` };
  const line = buf.subarray(0, end).toString('latin1');
  const length = end + 2;
  const fields = line.split(' ');
  if (fields[1] === 'UNKNOWN') return { kind: 'header', version: 1, length };
  if (fields.length !== 6) return { kind: 'invalid', reason: 'PROXY v1 line does not have 6 fields' };
  const [, family, srcIp = '', dstIp = '', srcPort = '', dstPort = ''] = fields;
  const validIp = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : undefined;
  if (!validIp) return { kind: 'invalid', reason: `PROXY v1 unknown protocol family ${JSON.stringify(family)}` };
  if (!validIp(srcIp) || !validIp(dstIp)) return { kind: 'invalid', reason: `PROXY v1 address is not ${family}` };
  const sport = port(srcPort);
  if (sport === undefined || port(dstPort) === undefined) return { kind: 'invalid', reason: 'PROXY v1 port is not a decimal 0-65535' };
  return { kind: 'header', version: 1, source: { ip: srcIp, port: sport }, length };
}

/** IPv6 bytes as text; an IPv4-mapped address (::ffff:a.b.c.d) as the IPv4 address, as sockets report it. */
function ipv6Text(bytes: Buffer): string {
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes.readUInt16BE(10) === 0xffff) return [...bytes.subarray(12, 16)].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // The URL parser writes the canonical RFC 5952 form (longest zero run compressed).
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

function parseV2(buf: Buffer): ProxyHeaderResult {
  if (buf.length < V2_FIXED) return { kind: 'incomplete' };
  const versionCommand = buf[12] ?? 0;
  if (versionCommand >> 4 !== 2) return { kind: 'invalid', reason: `PROXY v2 version ${versionCommand >> 4}` };
  const command = versionCommand & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: `PROXY v2 unknown command ${command}` };
  const familyTransport = buf[13] ?? 0;
  const addressLength = buf.readUInt16BE(14);
  if (addressLength > V2_MAX_LENGTH) return { kind: 'invalid', reason: `PROXY v2 header longer than ${V2_MAX_LENGTH} bytes` };
  const length = V2_FIXED + addressLength;
  if (buf.length < length) return { kind: 'incomplete' };
  // LOCAL: the balancer speaks for itself (health checks); the address block, if any, is to be ignored.
  if (command === 0) return { kind: 'header', version: 2, length };
  const block = buf.subarray(V2_FIXED, length);
  switch (familyTransport) {
    case 0x11: // TCP over IPv4: src addr, dst addr, src port, dst port
      if (block.length < 12) return { kind: 'invalid', reason: 'PROXY v2 IPv4 address block too short' };
      return { kind: 'header', version: 2, length, source: { ip: [...block.subarray(0, 4)].join('.'), port: block.readUInt16BE(8) } };
    case 0x21: // TCP over IPv6
      if (block.length < 36) return { kind: 'invalid', reason: 'PROXY v2 IPv6 address block too short' };
      return { kind: 'header', version: 2, length, source: { ip: ipv6Text(block.subarray(0, 16)), port: block.readUInt16BE(32) } };
    case 0x00: // UNSPEC: the spec says to use the connection's own addresses
    case 0x12:
    case 0x22:
    case 0x31:
    case 0x32:
      return { kind: 'header', version: 2, length };
    default:
      return { kind: 'invalid', reason: `PROXY v2 unknown address family/transport 0x${familyTransport.toString(16).padStart(2, '0')}` };
  }
}

/** Reads a PROXY header at the start of `buf` (everything received so far on the connection). */
export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  if (buf.length === 0) return { kind: 'incomplete' };
  if (agreesWith(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? { kind: 'incomplete' } : parseV2(buf);
  if (agreesWith(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? { kind: 'incomplete' } : parseV1(buf);
  return { kind: 'invalid', reason: 'no PROXY protocol header' };
}
