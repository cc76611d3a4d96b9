// How the command line exits when commander stops it: help and --version with 0, a usage error (an
// unknown option, a value outside an option's choices, a missing argument) with 2, as the docs promise.
import type { CommanderError } from 'commander';
import { EXIT } from '../errors/refusal.ts';

/** `authz explain` exits 2 for "denied": there a usage error is "the question could not be answered" (1). */
const TWO_MEANS_SOMETHING_ELSE = [['authz', 'explain']];

export function exitCodeOf(err: CommanderError, argv: readonly string[]): number {
  if (err.exitCode === 0) return 0;
  if (!err.code.startsWith('commander.') || err.code === 'commander.executeSubCommandAsync') return err.exitCode;
  const words = argv.slice(2);
  const special = TWO_MEANS_SOMETHING_ELSE.some((command) => command.every((word, i) => words[i] === word));
  return special ? 1 : EXIT.usage;
}
