// Where a command's token comes from: --token TEXT, --token-file FILE (or `-`), or standard input
// when neither is given and it is not a terminal. Exactly one source.
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { parseStoredToken } from './storedToken.ts';
import { fail, ok, type TokenResult } from './tokenErrors.ts';

export interface TokenSource {
  token?: string;
  tokenFile?: string;
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

export async function readTokenInput(
  source: TokenSource,
  stdin: Readable & { isTTY?: boolean } = process.stdin,
): Promise<TokenResult<string>> {
  if (source.token !== undefined && source.tokenFile !== undefined) {
    return fail('invalid-input', 'give the token either with --token or with --token-file, not both');
  }
  let text: string;
  if (source.token !== undefined) {
    text = source.token;
  } else if (source.tokenFile !== undefined && source.tokenFile !== '-') {
    try {
      text = fs.readFileSync(source.tokenFile, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return fail('missing', `token file ${source.tokenFile} does not exist`, { file: source.tokenFile });
      return fail('unreadable', `cannot read token file ${source.tokenFile}: ${(error as Error).message}`, { file: source.tokenFile });
    }
  } else {
    if (stdin.isTTY) return fail('invalid-input', 'no token: give --token, --token-file, or pipe the token on standard input');
    text = await readAll(stdin);
  }
  // A file `gatehouse login` wrote holds the token in JSON: attenuating or inspecting it works on the token.
  const stored = parseStoredToken(text);
  if (!stored.ok) return fail('invalid-input', `the token ${stored.error}`);
  if (stored.token.length === 0) return fail('invalid-input', 'the token is empty');
  return ok(stored.token);
}
