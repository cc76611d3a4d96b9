// Typed failures of the development PKI: each says what went wrong and, where there is one,
// which file. The CLI prints the message on one line; callers branch on `code`.
import { GatehouseError } from '../errors/refusal.ts';

export type PkiErrorCode =
  /** `dir` has no CA (ca.crt or ca.key missing) when one is needed to sign. */
  | 'ca-missing'
  /** Only one of ca.crt / ca.key exists: refusing to guess. */
  | 'ca-incomplete'
  /** The CA files exist but are unusable (unparseable, not a CA, key does not match, expired). */
  | 'ca-invalid'
  /** A client name outside [A-Za-z0-9._-]{1,64}. */
  | 'invalid-name'
  | 'invalid-email'
  | 'invalid-server-name'
  | 'invalid-days'
  /** The output file exists and `force` was not given. */
  | 'exists';

export class PkiError extends GatehouseError<PkiErrorCode> {
  /** The file the error is about, when there is one. */
  readonly file: string | undefined;

  constructor(code: PkiErrorCode, message: string, file?: string) {
    super(code, message);
    this.name = 'PkiError';
    this.file = file;
  }
}

export function isPkiError(err: unknown): err is PkiError {
  return err instanceof PkiError;
}
