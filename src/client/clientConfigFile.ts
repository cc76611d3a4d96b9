// The tunnel client's config file (default ~/.config/gatehouse/client.yaml): gateway, cert, key,
// ca, tokenFile, transport. Relative paths are resolved against the file's directory.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { homedir } from 'node:os';
import { parse } from 'yaml';

/** The file's keys. Checked by hand: zod would cost the client ~20 MiB of memory for six strings. */
const stringKeys = ['gateway', 'cert', 'key', 'ca', 'tokenFile'] as const;
const transports = ['connect', 'websocket', 'http2'] as const;
const knownKeys: readonly string[] = [...stringKeys, 'transport'];

export type ClientConfigFile = Partial<Record<(typeof stringKeys)[number], string>> & { transport?: (typeof transports)[number] };

/** Every problem with the parsed file's contents (unknown keys, wrong types), or its values. */
function checkValues(data: unknown, file: string): { ok: true; values: ClientConfigFile } | { ok: false; errors: string[] } {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, errors: [`${file}: expected a mapping of ${knownKeys.join(', ')}`] };
  const entries = Object.entries(data);
  const errors: string[] = [];
  const unknown = entries.map(([k]) => k).filter((k) => !knownKeys.includes(k));
  if (unknown.length > 0) errors.push(`${file}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (expected: ${knownKeys.join(', ')})`);
  const values: ClientConfigFile = {};
  for (const [key, value] of entries) {
    if (key === 'transport') {
      if (transports.includes(value as (typeof transports)[number])) values.transport = value as (typeof transports)[number];
      else errors.push(`${file}: transport: expected one of ${transports.join(', ')}`);
    } else if ((stringKeys as readonly string[]).includes(key)) {
      if (typeof value === 'string' && value.length > 0) values[key as (typeof stringKeys)[number]] = value;
      else if (value !== undefined) errors.push(`${file}: ${key}: expected a non-empty string`);
    }
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, values };
}

export type ConfigFileResult = { ok: true; values: ClientConfigFile; file?: string } | { ok: false; errors: string[] };

/** `~/x` -> home/x; a relative path -> against `base` when given. */
export function expandPath(path: string, home: string = homedir(), base?: string): string {
  const expanded = path === '~' || path.startsWith('~/') ? home + path.slice(1) : path;
  return base !== undefined && !isAbsolute(expanded) ? resolve(base, expanded) : expanded;
}

/**
 * Reads the config file. A missing file is fine when it is the default (`required` false): then
 * there are simply no values from it. Every problem found is reported, each naming the file.
 */
export function readClientConfigFile(file: string, required: boolean, home: string = homedir()): ConfigFileResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return { ok: true, values: {} };
    if (code === 'ENOENT') return { ok: false, errors: [`client config ${file} does not exist`] };
    return { ok: false, errors: [`cannot read client config ${file}: ${code ?? (err as Error).message}`] };
  }
  let data: unknown;
  try {
    data = parse(text) ?? {};
  } catch (err) {
    return { ok: false, errors: [`${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`] };
  }
  const parsed = checkValues(data, file);
  if (!parsed.ok) return parsed;
  const base = dirname(file);
  const values = parsed.values;
  const resolvePaths = (v: string | undefined) => (v === undefined ? undefined : expandPath(v, home, base));
  return {
    ok: true,
    file,
    values: {
      ...values,
      ...(values.cert !== undefined && { cert: resolvePaths(values.cert) }),
      ...(values.key !== undefined && { key: resolvePaths(values.key) }),
      ...(values.ca !== undefined && { ca: resolvePaths(values.ca) }),
      ...(values.tokenFile !== undefined && { tokenFile: resolvePaths(values.tokenFile) }),
    },
  };
}
