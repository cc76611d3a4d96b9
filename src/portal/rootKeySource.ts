// The root public key as the gateway's own pages see it (they refuse sign-in while it is unusable; the
// token work itself runs in the authorization workers): read from the configured file, re-read when it changes.
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { PublicKey } from '@biscuit-auth/biscuit-wasm';
import { parsePublicKey } from '../token/rootKey.ts';

export type RootKeyState = { ok: true; key: PublicKey } | { ok: false; reason: string };

export interface RootKeySource {
  /** The key as last loaded; a reload is started when the file changed. */
  current(): RootKeyState;
  /** Loads the key from `file` now (start-up and config reload). */
  load(file: string): Promise<void>;
}

export function createRootKeySource(): RootKeySource {
  let state: RootKeyState = { ok: false, reason: 'root key not loaded yet' };
  let loaded: { file: string; mtimeMs: number } | undefined;
  async function load(file: string): Promise<void> {
    let mtimeMs = 0;
    try {
      mtimeMs = statSync(file).mtimeMs;
      const parsed = parsePublicKey(await readFile(file, 'utf8'), `root key ${file}`);
      const previous = state;
      state = parsed.ok ? { ok: true, key: parsed.key } : { ok: false, reason: parsed.reason };
      if (previous.ok && previous !== state) previous.key.free();
    } catch (error) {
      state = { ok: false, reason: `root key ${file}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
    }
    loaded = { file, mtimeMs };
  }
  return {
    current() {
      if (loaded !== undefined) {
        try {
          if (statSync(loaded.file).mtimeMs !== loaded.mtimeMs) void load(loaded.file);
        } catch {
          // An unreadable file keeps the key already loaded, as the authorizer does.
        }
      }
      return state;
    },
    load,
  };
}
