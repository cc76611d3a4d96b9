// Token lifetimes as operators write them: 30s, 15m, 8h, 7d. One unit per value, whole numbers,
// bounded so a typo cannot mint a token that outlives everyone who knows about it.
import { fail, ok, type TokenResult } from './tokenErrors.ts';

const unitSeconds: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };
/** Longest lifetime accepted: 366 days. */
export const maxTtlSeconds = 366 * 86_400;
/** Lifetime of a minted token when none is given: 12 hours. */
export const defaultTtlSeconds = 12 * 3600;

export function parseTtl(text: string): TokenResult<number> {
  const match = /^(\d{1,9})([smhd])$/.exec(text.trim());
  const unit = match?.[2];
  if (!match || unit === undefined) {
    return fail('invalid-input', `invalid duration ${JSON.stringify(text)}: expected a number and a unit, such as 30s, 15m, 8h or 7d`);
  }
  return checkTtlSeconds(Number(match[1]) * (unitSeconds[unit] ?? 0));
}

export function checkTtlSeconds(seconds: number): TokenResult<number> {
  if (!Number.isInteger(seconds) || seconds <= 0) return fail('invalid-input', `invalid lifetime ${seconds}s: it must be a positive whole number of seconds`);
  if (seconds > maxTtlSeconds) return fail('invalid-input', `lifetime ${seconds}s is longer than the maximum of 366 days`);
  return ok(seconds);
}

/** `now + seconds`, rounded down to a whole second (Datalog dates have no fractions). */
export function expiryAfter(now: Date, seconds: number): Date {
  return new Date(Math.floor(now.getTime() / 1000) * 1000 + seconds * 1000);
}

