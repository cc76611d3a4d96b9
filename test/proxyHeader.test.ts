// The PROXY protocol header parser on its own: v1 and v2 as balancers write them, every prefix of a
// header is "incomplete" (never a wrong answer), malformed and oversized headers are refused.
import { describe, expect, it } from 'vitest';
import { configSchema } from '../src/config/schema.ts';
import { parseProxyHeader, V2_MAX_LENGTH } from '../src/listener/proxyHeader.ts';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2(command: number, family: number, block: Buffer): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | command;
  fixed[1] = family;
  fixed.writeUInt16BE(block.length, 2);
  return Buffer.concat([SIG, fixed, block]);
}

function v2ipv4(src: string, sport: number, extra = Buffer.alloc(0)): Buffer {
  const block = Buffer.alloc(12);
  src.split('.').forEach((o, i) => (block[i] = Number(o)));
  Buffer.from([127, 0, 0, 1]).copy(block, 4);
  block.writeUInt16BE(sport, 8);
  block.writeUInt16BE(8443, 10);
  return v2(1, 0x11, Buffer.concat([block, extra]));
}

const tlsHello = Buffer.from('160301020001', 'hex');

describe('v1', () => {
  it('TCP4 and TCP6 give the source address and the header length; what follows is not consumed', () => {
    const line = 'PROXY TCP4 192.0.2.7 127.0.0.1 51234 8443\r\n';
    const r = parseProxyHeader(Buffer.concat([Buffer.from(line), tlsHello]));
    expect(r).toEqual({ kind: 'header', version: 1, source: { ip: '192.0.2.7', port: 51234 }, length: line.length });
    const r6 = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 ::1 1 65535\r\n'));
    expect(r6).toMatchObject({ kind: 'header', source: { ip: '2001:db8::7', port: 1 } });
  });

  it('UNKNOWN is a header without a source (the connection keeps its own peer)', () => {
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toEqual({ kind: 'header', version: 1, length: 15 });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n'))).toMatchObject({ kind: 'header' });
  });

  it('every strict prefix is incomplete', () => {
    const line = Buffer.from('PROXY TCP4 192.0.2.7 127.0.0.1 51234 8443\r\n');
    for (let n = 0; n < line.length; n++) expect(parseProxyHeader(line.subarray(0, n)).kind).toBe('incomplete');
  });

  it.each([
    ['PROXY TCP4 192.0.2.7 127.0.0.1 51234\r\n', '6 fields'],
    ['PROXY TCP5 192.0.2.7 127.0.0.1 1 2\r\n', 'unknown protocol family'],
    ['PROXY TCP4 2001:db8::1 127.0.0.1 1 2\r\n', 'not TCP4'],
    ['PROXY TCP4 192.0.2.700 127.0.0.1 1 2\r\n', 'not TCP4'],
    ['PROXY TCP4 192.0.2.7 127.0.0.1 65536 2\r\n', 'port'],
    ['PROXY TCP4 192.0.2.7 127.0.0.1 0080 2\r\n', 'port'],
    ['PROXY TCP4 192.0.2.7 127.0.0.1 -1 2\r\n', 'port'],
    ['PROXY  TCP4 192.0.2.7 127.0.0.1 1 2\r\n', '6 fields'],
  ])('%j is refused (%s)', (line, why) => {
    const r = parseProxyHeader(Buffer.from(line));
    expect(r.kind).toBe('invalid');
    expect(r.kind === 'invalid' && r.reason).toContain(why);
  });

  it('a line with no CRLF within 107 bytes is refused, not buffered', () => {
    const r = parseProxyHeader(Buffer.from('PROXY TCP4 ' + '1'.repeat(120)));
    expect(r).toMatchObject({ kind: 'invalid', reason: expect.stringContaining('longer than 107') });
  });
});

describe('v2', () => {
  it('PROXY over IPv4 gives the source; TLVs after the addresses are skipped with the header', () => {
    const tlv = Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32]); // ALPN "h2"
    const header = v2ipv4('198.51.100.9', 40000, tlv);
    const r = parseProxyHeader(Buffer.concat([header, tlsHello]));
    expect(r).toEqual({ kind: 'header', version: 2, source: { ip: '198.51.100.9', port: 40000 }, length: header.length });
  });

  it('IPv6 is written canonically; an IPv4-mapped address comes out as IPv4', () => {
    const block = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(block, 0);
    block.writeUInt16BE(5555, 32);
    expect(parseProxyHeader(v2(1, 0x21, block))).toMatchObject({ source: { ip: '2001:db8::7', port: 5555 } });
    Buffer.from('00000000000000000000ffffc0000207', 'hex').copy(block, 0);
    expect(parseProxyHeader(v2(1, 0x21, block))).toMatchObject({ source: { ip: '192.0.2.7' } });
  });

  it('LOCAL (a health check) and UNSPEC have no source', () => {
    expect(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0)))).toEqual({ kind: 'header', version: 2, length: 16 });
    expect(parseProxyHeader(v2(1, 0x00, Buffer.alloc(0)))).toEqual({ kind: 'header', version: 2, length: 16 });
  });

  it('every strict prefix is incomplete', () => {
    const header = v2ipv4('198.51.100.9', 40000);
    for (let n = 0; n < header.length; n++) expect(parseProxyHeader(header.subarray(0, n)).kind).toBe('incomplete');
  });

  it.each([
    ['version 1', Buffer.concat([SIG, Buffer.from([0x11, 0x11, 0x00, 0x0c]), Buffer.alloc(12)]), 'version'],
    ['command 2', Buffer.concat([SIG, Buffer.from([0x22, 0x11, 0x00, 0x0c]), Buffer.alloc(12)]), 'command'],
    ['family 0x41', v2(1, 0x41, Buffer.alloc(12)), 'family'],
    ['short IPv4 block', v2(1, 0x11, Buffer.alloc(8)), 'too short'],
    ['short IPv6 block', v2(1, 0x21, Buffer.alloc(12)), 'too short'],
  ])('%s is refused', (_name, header, why) => {
    const r = parseProxyHeader(header);
    expect(r.kind).toBe('invalid');
    expect(r.kind === 'invalid' && r.reason).toContain(why);
  });

  it(`a declared length past ${V2_MAX_LENGTH} bytes is refused before its bytes arrive`, () => {
    const fixed = Buffer.from([0x21, 0x11, 0xff, 0xff]);
    expect(parseProxyHeader(Buffer.concat([SIG, fixed]))).toMatchObject({ kind: 'invalid', reason: expect.stringContaining('longer than') });
  });
});

it('no header at all (a TLS ClientHello, plain HTTP, a near miss of the signatures) is refused at once', () => {
  for (const start of [tlsHello, Buffer.from('GET / HTTP/1.1\r\n'), Buffer.from('PROXX'), Buffer.from('\r\n\r\n\0\r\nQUIT\r')]) {
    expect(parseProxyHeader(start).kind).toBe('invalid');
  }
});

describe('listen[].proxyProtocol in the config schema', () => {
  const listen = (entry: Record<string, unknown>) => configSchema.shape.listen.safeParse([entry]);
  it('takes CIDRs and bare addresses, IPv4 and IPv6', () => {
    expect(listen({ tcp: '127.0.0.1:8443', proxyProtocol: { trusted: ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::1'] } }).success).toBe(true);
  });
  it.each([['10.0.0.0/33'], ['10.0.0.0/8/1'], ['haproxy.internal'], ['10.0.0.0/'], ['::1/129']])('refuses %s', (entry) => {
    expect(listen({ tcp: '127.0.0.1:8443', proxyProtocol: { trusted: [entry] } }).success).toBe(false);
  });
  it('refuses an empty trusted list and UNIX listeners', () => {
    expect(listen({ tcp: '127.0.0.1:8443', proxyProtocol: { trusted: [] } }).success).toBe(false);
    const unix = listen({ unix: 'run/g.sock', proxyProtocol: { trusted: ['127.0.0.1'] } });
    expect(unix.success).toBe(false);
    expect(JSON.stringify(unix.error?.issues)).toContain('tcp listeners only');
  });
});
