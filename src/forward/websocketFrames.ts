// Watches one direction of a proxied WebSocket for its first close frame, reading only frame headers
// and skipping payloads, so the close record can say which side ended the conversation (and where a frame ends).

/** Feed it every chunk of one direction; `sawClose` turns true at the first close frame (opcode 8). */
export interface CloseFrameWatcher {
  scan(chunk: Buffer): void;
  readonly sawClose: boolean;
  /** Every frame carried so far is complete: a frame of the gateway's own may follow (RFC 6455 5.4: control frames may come between fragments). */
  readonly atFrameBoundary: boolean;
}

/** A server's close frame (unmasked) with `code` and `reason` (cut to the 123 bytes a control frame can hold). */
export function closeFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason).subarray(0, 123);
  const frame = Buffer.alloc(4 + text.length);
  frame[0] = 0x88; // FIN, opcode 8 (close)
  frame[1] = 2 + text.length;
  frame.writeUInt16BE(code, 2);
  text.copy(frame, 4);
  return frame;
}

export function watchForCloseFrame(): CloseFrameWatcher {
  const header: number[] = [];
  let skip = 0; // payload bytes of the current frame still to pass over
  let sawClose = false;

  const headerLength = (): number => {
    if (header.length < 2) return 2;
    const len7 = (header[1] as number) & 0x7f;
    const extended = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const mask = (header[1] as number) & 0x80 ? 4 : 0;
    return 2 + extended + mask;
  };

  const payloadLength = (): number => {
    const len7 = (header[1] as number) & 0x7f;
    if (len7 < 126) return len7;
    if (len7 === 126) return ((header[2] as number) << 8) | (header[3] as number);
    let n = 0;
    for (let i = 2; i < 10; i++) n = n * 256 + (header[i] as number);
    return n;
  };

  return {
    scan(chunk) {
      let i = 0;
      while (i < chunk.length && !sawClose) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - i);
          skip -= n;
          i += n;
          continue;
        }
        header.push(chunk[i] as number);
        i += 1;
        if (header.length < headerLength()) continue;
        if (((header[0] as number) & 0x0f) === 0x8) sawClose = true;
        skip = payloadLength();
        header.length = 0;
      }
    },
    get sawClose() {
      return sawClose;
    },
    get atFrameBoundary() {
      return !sawClose && skip === 0 && header.length === 0;
    },
  };
}
