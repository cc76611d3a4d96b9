// PLACEHOLDER: replaced by the real `gatehouse pki` commands.
import type { Command } from 'commander';
export function registerPki(program: Command): void {
  program.command('pki').description('(not yet implemented)');
}
