// The forms in which users run the tunnel client, as the benches launch them: the sources (development),
// the built package's bin, the laptop bundle and the single binary, each with the Node flags of its first line.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, repoRoot } from '../../test/support/gatewayHarness.ts';

export type ClientForm = 'sources' | 'package' | 'bundle' | 'sea';

export const clientFiles: Record<ClientForm, string> = {
  sources: cli,
  package: join(repoRoot, 'dist', 'lib', 'cli', 'gatehouse.js'),
  bundle: join(repoRoot, 'dist', 'client', 'gatehouse-client.mjs'),
  sea: join(repoRoot, 'dist', 'client', 'gatehouse-client-linux-x64'),
};

/** The Node flags a script's `#!/usr/bin/env -S node FLAGS` line gives it when run as a program. */
export function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').slice(0, 300).split('\n')[0] ?? '';
  const m = /^#!\S*env (?:-S )?node((?: --?\S+)*)\s*$/.exec(first);
  return m?.[1] ? m[1].trim().split(/\s+/) : [];
}

/**
 * The program and leading arguments that start `gatehouse` in `form` on this machine's pinned Node, as its
 * own first line would (`node FLAGS file`); `extraFlags` (e.g. --cpu-prof) go to Node, not to gatehouse.
 */
export function clientCommand(form: ClientForm, extraFlags: string[] = []): string[] {
  const file = clientFiles[form];
  if (!existsSync(file)) throw new Error(`${file} is missing: run ${form === 'package' ? 'npm run build' : 'npm run build:client'} first`);
  if (form === 'sea') return extraFlags.length > 0 ? [file, ...extraFlags] : [file];
  return [process.execPath, ...shebangFlags(file), ...extraFlags, file];
}
