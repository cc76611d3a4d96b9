// A hand-written TLS 1.2 client handshake, up to CertificateVerify: it can present a certificate with
// a private key that does not match it (no TLS library will), offer odd cipher lists or stall mid-hello.
import { createECDH, randomBytes, sign } from 'node:crypto';
import { connect, type Socket } from 'node:net';

const HANDSHAKE = 22;
const ALERT = 21;
export const ECDHE_ECDSA_AES128_GCM_SHA256 = 0xc02b;
export const ECDHE_ECDSA_AES256_GCM_SHA384 = 0xc02c;

const u8 = (n: number) => Buffer.from([n & 0xff]);
const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u24 = (n: number) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
const vec16 = (b: Buffer) => Buffer.concat([u16(b.length), b]);
const extension = (type: number, data: Buffer) => Buffer.concat([u16(type), vec16(data)]);
const handshakeMessage = (type: number, body: Buffer) => Buffer.concat([u8(type), u24(body.length), body]);
const record = (type: number, payload: Buffer) => Buffer.concat([u8(type), u16(0x0303), u16(payload.length), payload]);

/** A TLS 1.2 ClientHello handshake message (no record header), P-256 and ECDSA-SHA256 only. */
export function clientHelloMessage(ciphers: number[] = [ECDHE_ECDSA_AES128_GCM_SHA256, ECDHE_ECDSA_AES256_GCM_SHA384]): Buffer {
  const host = Buffer.from('localhost');
  const extensions = Buffer.concat([
    extension(0x0000, vec16(Buffer.concat([u8(0), vec16(host)]))),
    extension(0x000a, vec16(u16(0x0017))),
    extension(0x000b, Buffer.from([1, 0])),
    extension(0x000d, vec16(u16(0x0403))),
    extension(0xff01, Buffer.from([0])),
  ]);
  const body = Buffer.concat([u16(0x0303), randomBytes(32), u8(0), vec16(Buffer.concat(ciphers.map(u16))), Buffer.from([1, 0]), vec16(extensions)]);
  return handshakeMessage(1, body);
}

/** A ClientHello in a record, as the first bytes of a connection. */
export function clientHelloRecord(ciphers?: number[]): Buffer {
  return record(HANDSHAKE, clientHelloMessage(ciphers));
}

export interface HandshakeOutcome {
  /** The server's alert description (e.g. 51 decrypt_error, 40 handshake_failure), if it sent one. */
  alert?: number;
  /** The server sent its whole first flight (ServerHelloDone). */
  serverHelloDone: boolean;
  /** The server asked for a client certificate. */
  certificateRequested: boolean;
  /** The server closed the connection. */
  closed: boolean;
}

/** Handshake messages from a stream of TLS records (plaintext part of the handshake only). */
function parseRecords(buf: Buffer): { messages: Buffer[]; alert?: number; used: number } {
  const messages: Buffer[] = [];
  let hs = Buffer.alloc(0);
  let at = 0;
  let alert: number | undefined;
  while (at + 5 <= buf.length) {
    const len = buf.readUInt16BE(at + 3);
    if (at + 5 + len > buf.length) break;
    const type = buf[at];
    const payload = buf.subarray(at + 5, at + 5 + len);
    if (type === ALERT) alert = payload[1];
    if (type === HANDSHAKE) hs = Buffer.concat([hs, payload]);
    at += 5 + len;
  }
  let m = 0;
  while (m + 4 <= hs.length) {
    const len = hs.readUIntBE(m + 1, 3);
    if (m + 4 + len > hs.length) break;
    messages.push(hs.subarray(m, m + 4 + len));
    m += 4 + len;
  }
  return { messages, ...(alert !== undefined && { alert }), used: at };
}

/**
 * Runs a TLS 1.2 handshake to 127.0.0.1:`port` from `localAddress`, presenting `certDers` (leaf first)
 * and signing CertificateVerify with `signingKeyPem`, whatever key the certificate holds. Waits
 * `settleMs` for the server's verdict: an alert, a close, or silence (it waits for our Finished).
 */
export function handshakeWithKey(port: number, localAddress: string, certDers: Buffer[], signingKeyPem: string, settleMs = 1500): Promise<HandshakeOutcome> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: '127.0.0.1', port, localAddress });
    const hello = clientHelloMessage();
    let received = Buffer.alloc(0);
    let sentFlight = false;
    let outcome: HandshakeOutcome = { serverHelloDone: false, certificateRequested: false, closed: false };
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    socket.on('error', () => {});
    socket.on('close', () => {
      outcome = { ...outcome, closed: true };
      finish();
    });
    socket.on('connect', () => socket.write(record(HANDSHAKE, hello)));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const parsed = parseRecords(received);
      if (parsed.alert !== undefined) outcome = { ...outcome, alert: parsed.alert };
      if (sentFlight) return;
      const types = parsed.messages.map((m) => m[0]);
      outcome = { ...outcome, certificateRequested: types.includes(13), serverHelloDone: types.includes(14) };
      if (parsed.alert !== undefined) return finish();
      if (!outcome.serverHelloDone) return;
      sentFlight = true;
      const certificate = handshakeMessage(11, Buffer.concat([u24(certDers.reduce((n, d) => n + 3 + d.length, 0)), ...certDers.map((d) => Buffer.concat([u24(d.length), d]))]));
      const ecdh = createECDH('prime256v1');
      const keyExchange = handshakeMessage(16, Buffer.concat([u8(65), ecdh.generateKeys()]));
      const transcript = Buffer.concat([hello, ...parsed.messages, certificate, keyExchange]);
      const signature = sign('sha256', transcript, signingKeyPem);
      const verify = handshakeMessage(15, Buffer.concat([u16(0x0403), vec16(signature)]));
      socket.write(record(HANDSHAKE, Buffer.concat([certificate, keyExchange, verify])));
      received = Buffer.alloc(0);
      timer = setTimeout(finish, settleMs);
    });
  });
}

/** DER bytes of every certificate in a PEM bundle, in order. */
export function pemToDers(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) => Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'));
}
