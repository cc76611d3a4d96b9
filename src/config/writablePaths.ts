// Checks that every path the gateway will write is writable by the user running the check: the audit
// file (and the directories the gateway would create for it) and each UNIX listener's socket directory.
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { ConfigIssue, KeyPath } from './configError.ts';

type Raw = Record<string, unknown>;

function record(value: unknown): Raw | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Raw) : undefined;
}

const reasons: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOTDIR: 'a parent is not a directory',
};

function errnoText(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  return reasons[code] ?? (error as Error).message;
}

/** Why the current user cannot write `file` (or create it), or undefined when it can. */
export function cannotWrite(file: string, kind: 'file' | 'socket'): string | undefined {
  try {
    const st = statSync(file);
    if (kind === 'file') {
      // A device or a pipe (/dev/stdout, a FIFO to a log shipper) is fine as long as it can be written.
      if (st.isDirectory()) return `${file} is a directory`;
      accessSync(file, constants.W_OK);
      return undefined;
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return `cannot write ${file}: ${errnoText(error)}`;
  }
  // The file is created (or a stale socket replaced) in its directory; missing directories are created
  // by the gateway, so the nearest one that exists must let this user in and write.
  let dir = path.dirname(file);
  for (;;) {
    try {
      if (!statSync(dir).isDirectory()) return `cannot create ${file}: ${dir} is not a directory`;
      accessSync(dir, constants.W_OK | constants.X_OK);
      return undefined;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') return `cannot create ${file}: ${dir} is not writable by uid ${process.getuid?.() ?? '?'} (${errnoText(error)})`;
      const parent = path.dirname(dir);
      if (parent === dir) return `cannot create ${file}: no directory on its path exists`;
      dir = parent;
    }
  }
}

/** Issues for the audit file and UNIX listeners named in the raw document (`dir`: the config's directory). */
export function writablePathChecks(root: Raw, dir: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const check = (key: KeyPath, value: unknown, kind: 'file' | 'socket') => {
    if (typeof value !== 'string' || value === '') return; // the schema reports it
    const why = cannotWrite(path.resolve(dir, value), kind);
    if (why) issues.push({ path: key, message: `${why}: the gateway would not start` });
  };
  check(['audit', 'file'], record(root.audit)?.file, 'file');
  if (Array.isArray(root.listen)) root.listen.forEach((entry, i) => check(['listen', i, 'unix'], record(entry)?.unix, 'socket'));
  return issues;
}
