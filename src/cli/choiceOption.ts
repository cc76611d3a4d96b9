// Options whose value is one of a fixed set (`--decision allow|deny`, `--format table|json|...`): commander
// refuses any other value with the list of choices before the command runs, and shows them in --help.
import { InvalidArgumentError, Option } from 'commander';

/** `flags` takes one of `choices`; `repeatable` collects every value given into a list. */
export function choiceOption(flags: string, description: string, choices: readonly string[], repeatable = false): Option {
  const option = new Option(flags, description).choices(choices);
  if (!repeatable) return option;
  return option.argParser((value: string, previous: string[] | undefined) => {
    if (!choices.includes(value)) throw new InvalidArgumentError(`Allowed choices are ${choices.join(', ')}.`);
    return [...(previous ?? []), value];
  });
}
