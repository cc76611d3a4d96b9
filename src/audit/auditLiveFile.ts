// Notices the live audit file deleted (also: replaced and the old one removed) or truncated under the
// writer, checked before every batch: records written then are lost, so the writer holds them instead.
import { fstatSync } from 'node:fs';

export interface LiveFileWatch {
  /** The writer (re)opened the file on `fd`; `written` is its byte count so far. */
  opened(fd: number, written: number): void;
  /** Why the file open on `fd` no longer keeps what is written to it (undefined while it does). */
  check(fd: number, written: number): string | undefined;
}

export function watchLiveFile(path: string): LiveFileWatch {
  let at: { size: number; written: number } | undefined;
  return {
    opened(fd, written) {
      try {
        const st = fstatSync(fd);
        at = { size: st.size, written };
      } catch {
        at = undefined;
      }
    },
    check(fd, written) {
      if (!at || fd < 0) return undefined;
      // One fstat per batch (not per record): cheap next to the write it guards. The open file, not
      // the path: a file renamed by logrotate still keeps its records until the reopen.
      let st;
      try {
        st = fstatSync(fd);
      } catch {
        return undefined;
      }
      if (st.nlink === 0) return `${path} was deleted (or replaced and the old file removed)`;
      const expected = at.size + written - at.written;
      if (st.size < expected) return `${path} was truncated (${st.size} bytes, ${expected} written)`;
      return undefined;
    },
  };
}
