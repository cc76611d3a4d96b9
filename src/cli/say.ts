// Operator messages of the commands: one line on stderr, prefixed with the program name, with what
// peers, files or records put into it escaped. The audit log, not this, is the record of traffic.
import { displaySafe } from '../text/displayText.ts';

/** A writer of one-line messages on stderr after `prefix` (the client commands pass theirs). */
export function sayer(prefix: string): (message: string) => void {
  return (message) => void process.stderr.write(`${prefix}${displaySafe(message)}\n`);
}

export const say = sayer('gatehouse: ');
