// Typed outcomes of the token tooling: every failure a caller must decide on (bad input, missing
// or malformed file, token that does not verify) is a value, never a thrown string.
export type TokenErrorKind =
  /** A name, duration, id or option the caller supplied is not acceptable. */
  | 'invalid-input'
  /** A file that must exist does not. */
  | 'missing'
  /** A file exists but cannot be read (permissions, a directory, I/O). */
  | 'unreadable'
  /** A file was read but its content is not what it must be. */
  | 'malformed'
  /** A file would be overwritten and overwriting was not asked for. */
  | 'exists'
  /** A file could not be written. */
  | 'unwritable'
  /** The token is not base64url Biscuit, or its signatures do not verify against the root key. */
  | 'invalid-token'
  /** biscuit-wasm refused an operation for another reason. */
  | 'library';

export interface TokenError {
  kind: TokenErrorKind;
  /** One line, ready to show to an operator; names the file when one is involved. */
  message: string;
  file?: string;
  /** 1-based line number, for malformed line-oriented files. */
  line?: number;
}

export type TokenResult<T> = { ok: true; value: T } | { ok: false; error: TokenError };

export function ok<T>(value: T): TokenResult<T> {
  return { ok: true, value };
}

export function fail<T>(kind: TokenErrorKind, message: string, extra: Partial<TokenError> = {}): TokenResult<T> {
  return { ok: false, error: { kind, message, ...extra } };
}

/** The error of a failed result, retyped so it can be passed up as another result type. */
export function passOn<T>(result: { ok: false; error: TokenError }): TokenResult<T> {
  return { ok: false, error: result.error };
}
