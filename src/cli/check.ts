// PLACEHOLDER: replaced by the real `gatehouse check` commands.
import type { Command } from 'commander';
export function registerCheck(program: Command): void {
  program.command('check').description('(not yet implemented)');
}
