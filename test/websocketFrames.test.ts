// The proxied-WebSocket frame watcher: where frames end (the gateway's own close frame may only go there)
// and the close frame it writes, read by a real WebSocket client (ws) over a real socket.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import WebSocket from 'ws';
import { closeFrame, watchForCloseFrame } from '../src/forward/websocketFrames.ts';

/** A server's unmasked binary frame with `payload` bytes (16-bit length past 125). */
function binaryFrame(payload: number): Buffer {
  const head = payload < 126 ? Buffer.from([0x82, payload]) : Buffer.from([0x82, 126, payload >> 8, payload & 0xff]);
  return Buffer.concat([head, Buffer.alloc(payload, 7)]);
}

it('is at a frame boundary only between whole frames, whatever the chunking', () => {
  const frames = Buffer.concat([binaryFrame(5), binaryFrame(300)]);
  for (const cut of [1, 2, 3, 7, 8, 100, frames.length - 1]) {
    const watcher = watchForCloseFrame();
    expect(watcher.atFrameBoundary).toBe(true);
    watcher.scan(frames.subarray(0, cut));
    expect(watcher.atFrameBoundary).toBe(cut === 7);
    watcher.scan(frames.subarray(cut));
    expect(watcher.atFrameBoundary).toBe(true);
  }
});

it('is never at a boundary once a close frame went by (the conversation is already ending)', () => {
  const watcher = watchForCloseFrame();
  watcher.scan(closeFrame(1000, 'bye'));
  expect(watcher.sawClose).toBe(true);
  expect(watcher.atFrameBoundary).toBe(false);
});

it('writes a close frame a WebSocket client reads as that code and reason, the reason cut to fit a control frame', async () => {
  // A server that accepts the handshake, then sends only the frame under test and ends.
  let frame: Buffer = Buffer.alloc(0);
  const server = createServer().on('upgrade', (req, socket) => {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`), frame]));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const read = (next: Buffer) =>
    new Promise<{ code: number; reason: string }>((resolve, reject) => {
      frame = next;
      const ws = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
      ws.on('error', reject);
    });
  try {
    expect(await read(closeFrame(1001, 'gateway shutting down'))).toEqual({ code: 1001, reason: 'gateway shutting down' });
    expect(await read(closeFrame(1008, 'x'.repeat(200)))).toEqual({ code: 1008, reason: 'x'.repeat(123) });
  } finally {
    server.close();
  }
});
