// The tunnel client's config file (default ~/.config/gatehouse/client.yaml): gateway, cert, key,
// ca, tokenFile, transport. Relative paths are resolved against the file's directory.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { homedir } from 'node:os';
import { parse } from 'yaml';
import { z } from 'zod';

const fileSchema = z
  .object({
    gateway: z.string().min(1).optional(),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    ca: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    transport: z.enum(['connect', 'websocket']).optional(),
  })
  .strict();

export type ClientConfigFile = z.infer<typeof fileSchema>;

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
  const parsed = fileSchema.safeParse(data);
  if (!parsed.success) {
    const known = Object.keys(fileSchema.shape).join(', ');
    return {
      ok: false,
      errors: parsed.error.issues.map((issue) => {
        if (issue.code === 'unrecognized_keys') return `${file}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')} (expected: ${known})`;
        const key = issue.path.join('.');
        return `${file}: ${key ? `${key}: ` : ''}${issue.code === 'invalid_value' ? `expected one of ${issue.values.join(', ')}` : issue.message}`;
      }),
    };
  }
  const base = dirname(file);
  const values = parsed.data;
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
