// The table of refusal codes for docs/reference/exit-codes.md, read from the table the gateway and the
// client share (src/errors/refusalCodes.ts), so the documented codes are exactly the ones in use.
import { CODES } from '../../src/errors/refusalCodes.ts';

export function refusalCodesTable(): string {
  const rows = Object.entries(CODES).map(([code, e]) => `| \`${code}\` | ${e.status === 0 ? "any other" : e.status} | ${e.message.replace(/\|/g, '\\|')} | ${e.exit} |`);
  return ['| code | HTTP status | what the client is told | exit of `tunnel`/`publish` |', '| --- | ---: | --- | ---: |', ...rows].join('\n');
}
