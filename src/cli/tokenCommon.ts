// What every `gatehouse token` subcommand shares: an action whose failure is printed as one escaped line
// (exit 1), results unwrapped into that failure, repeatable options, and reading a token or a public key.
import type { PublicKey } from '@biscuit-auth/biscuit-wasm';
import type { TokenResult } from '../token/tokenErrors.ts';
import { commandFailure } from '../errors/refusal.ts';
import { displaySafe } from '../text/displayText.ts';

export function unwrap<T>(result: TokenResult<T>): T {
  if (!result.ok) throw commandFailure(result.error.message);
  return result.value;
}

export function run<A extends unknown[]>(body: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      // The message may quote the token or Datalog given: shown escaped.
      process.stderr.write(`error: ${displaySafe(message.split('\n')[0] ?? '')}\n`);
      process.exitCode = 1;
    }
  };
}

export const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];
export async function readPublicKeyFile(file: string): Promise<PublicKey> {
  const { readPublicKey } = await import('../token/keyFiles.ts');
  return unwrap(readPublicKey(file));
}

export async function readToken(options: { token?: string; tokenFile?: string }): Promise<string> {
  const { readTokenInput } = await import('../token/tokenInput.ts');
  return unwrap(await readTokenInput(options));
}
