// Raw WebSocket bytes for hostile tests: an upgrade request, frames built by hand (masked or not, any
// opcode, any declared length), and the close code read back from what the gateway sent.
import { randomBytes } from 'node:crypto';
import { TUNNEL_SUBPROTOCOL } from '../../../src/tunnel/tunnelProtocol.ts';

export interface UpgradeOptions {
  method?: string;
  key?: string | null;
  version?: string | null;
  protocol?: string | null;
  upgrade?: string;
  extra?: string;
}

/** An upgrade request for `path`; `null` leaves a header out. */
export function upgradeRequest(path: string, authLine: string, o: UpgradeOptions = {}): string {
  const lines = [`${o.method ?? 'GET'} ${path} HTTP/1.1`, 'Host: localhost', `Upgrade: ${o.upgrade ?? 'websocket'}`, 'Connection: Upgrade'];
  if (o.key !== null) lines.push(`Sec-WebSocket-Key: ${o.key ?? randomBytes(16).toString('base64')}`);
  if (o.version !== null) lines.push(`Sec-WebSocket-Version: ${o.version ?? '13'}`);
  if (o.protocol !== null) lines.push(`Sec-WebSocket-Protocol: ${o.protocol ?? TUNNEL_SUBPROTOCOL}`);
  return `${lines.join('\r\n')}\r\n${authLine}${o.extra ?? ''}\r\n`;
}

export interface FrameOptions {
  fin?: boolean;
  opcode: number;
  payload?: Buffer;
  masked?: boolean;
  /** Declared payload length when it differs from the payload sent (oversize announcements). */
  declaredLength?: number;
}

export function frame(o: FrameOptions): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const length = o.declaredLength ?? payload.length;
  const masked = o.masked ?? true;
  const head: number[] = [((o.fin ?? true) ? 0x80 : 0) | (o.opcode & 0x0f)];
  const maskBit = masked ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (length < 126) head.push(maskBit | length);
  else if (length < 65536) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(length);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(length));
  }
  if (!masked) return Buffer.concat([Buffer.from(head), ext, payload]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)));
  return Buffer.concat([Buffer.from(head), ext, mask, body]);
}

export const closeFrame = (code: number, reason = '') => {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code);
  payload.write(reason, 2);
  return frame({ opcode: 0x8, payload });
};

/** The status code and reason of the first close frame in `bytes` (unmasked server frames), if any. */
export function closeCodeIn(bytes: Buffer): { code: number; reason: string } | undefined {
  let at = 0;
  while (at + 2 <= bytes.length) {
    const opcode = (bytes[at] as number) & 0x0f;
    let len = (bytes[at + 1] as number) & 0x7f;
    let off = at + 2;
    if (len === 126) {
      len = bytes.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      len = Number(bytes.readBigUInt64BE(off));
      off += 8;
    }
    if (off + len > bytes.length) return undefined;
    if (opcode === 0x8) return { code: len >= 2 ? bytes.readUInt16BE(off) : 1005, reason: bytes.subarray(off + 2, off + len).toString() };
    at = off + len;
  }
  return undefined;
}
