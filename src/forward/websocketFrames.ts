// Watches one direction of a proxied WebSocket for its first close frame, reading only frame headers
// and skipping payloads, so the close record can say which side ended the conversation.

/** Feed it every chunk of one direction; `sawClose` turns true at the first close frame (opcode 8). */
export interface CloseFrameWatcher {
  scan(chunk: Buffer): void;
  readonly sawClose: boolean;
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
  };
}
