// The `--help` of every gatehouse command, as users see it: each command is run as a child process
// (the development entry, bin/gatehouse.js) and its sub-commands are found in its own help.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The help of one command line, e.g. `['audit', 'verify']`; commander prints it at 80 columns without a terminal. */
async function helpOf(root: string, words: string[]): Promise<string> {
  // Nothing from this shell may change the text: the client's GATEHOUSE_* settings, a width, forced colours.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('GATEHOUSE_') && !['COLUMNS', 'FORCE_COLOR', 'CLICOLOR_FORCE'].includes(name)));
  const { stdout } = await run(process.execPath, [join(root, 'bin', 'gatehouse.js'), ...words, '--help'], { cwd: root, env, encoding: 'utf8' });
  return stdout.replace(/\s+$/, '');
}

/** Names listed under `Commands:` in a help text, without commander's own `help`. */
export function subcommandsIn(help: string): string[] {
  const section = help.split(/\n\n/).find((block) => block.startsWith('Commands:'));
  if (!section) return [];
  return section
    .split('\n')
    .slice(1)
    .map((line) => /^ {2}([a-z][a-z-]*)/.exec(line)?.[1])
    .filter((name): name is string => name !== undefined && name !== 'help');
}

/** Every command's help, the program's own first, then depth first in the order the help lists them. */
export async function everyCommandHelp(root: string): Promise<{ command: string; help: string }[]> {
  const found: { command: string; help: string }[] = [];
  const visit = async (words: string[]): Promise<void> => {
    const help = await helpOf(root, words);
    found.push({ command: ['gatehouse', ...words].join(' '), help });
    for (const name of subcommandsIn(help)) await visit([...words, name]);
  };
  await visit([]);
  return found;
}

/** The Markdown of the CLI reference: one heading and one text block per command. */
export async function cliHelpMarkdown(root: string): Promise<string> {
  const helps = await everyCommandHelp(root);
  return helps.map(({ command, help }) => `### \`${command}\`\n\n\`\`\`text\n${help}\n\`\`\``).join('\n\n');
}
