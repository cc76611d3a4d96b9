// Config errors: what `loadConfig` reports and how `gatehouse check` prints it.
// Checks produce issues keyed by a path into the document; loadConfig turns them into file positions.
import { displayLines } from '../text/displayText.ts';

/** A path into the YAML document, as zod reports it: `['routes', 2, 'upstream']`. */
export type KeyPath = readonly (string | number)[];

/** One problem with the configuration, located in a file. `line` 0 means "the file as a whole". */
export interface ConfigError {
  file: string;
  line: number;
  column: number;
  /** The offending key, such as `routes[2].upstream`, `routes[1]` or `(document)`. */
  key: string;
  message: string;
  /** A configuration that loads but may not work as written: reported, refused only by `check --strict`. */
  warning?: boolean;
}

/** A problem found by a check, not yet placed in the file. */
export interface ConfigIssue {
  path: KeyPath;
  message: string;
  /** Set for unknown keys: the issue points at this key inside the mapping at `path`. */
  unknownKey?: string;
  /** A 0-based line inside a multi-line value (such as a policy), when the check knows it. */
  lineInValue?: number;
  /** An explicit position in another file (such as a line of the revocation list). */
  at?: { file: string; line: number; column: number };
  /** See ConfigError.warning. */
  warning?: boolean;
}

/** `['routes', 2, 'upstream']` -> `routes[2].upstream`; `[]` -> `(document)`. */
export function keyText(path: KeyPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? segment : `.${segment}`;
  }
  return text === '' ? '(document)' : text;
}

/** `routes.yaml:12:5: routes[2].upstream: expected unix:/path or tcp:host:port` */
export function formatConfigError(e: ConfigError): string {
  const where = e.line > 0 ? `${e.file}:${e.line}:${e.column}` : e.file;
  return displayLines(`${where}: ${e.key}: ${e.warning ? 'warning: ' : ''}${e.message}`);
}
