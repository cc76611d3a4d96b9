// PLACEHOLDER: replaced by the real `gatehouse token` commands.
import type { Command } from 'commander';
export function registerToken(program: Command): void {
  program.command('token').description('(not yet implemented)');
}
