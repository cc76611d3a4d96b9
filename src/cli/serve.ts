// PLACEHOLDER: replaced by the real `gatehouse serve` commands.
import type { Command } from 'commander';
export function registerServe(program: Command): void {
  program.command('serve').description('(not yet implemented)');
}
