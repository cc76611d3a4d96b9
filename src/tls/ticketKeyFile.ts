// Writes a new session-ticket key for `gatehouse pki ticket-key`: 48 random bytes, mode 0600, put in
// place by rename so a gateway reloading at that moment never reads half a key.
import { randomBytes } from 'node:crypto';
import { access, rename, writeFile } from 'node:fs/promises';
import { TICKET_KEY_BYTES, ticketKeyId } from './ticketKeys.ts';

/** Returns the key's id (as the audit log names it). Refuses to replace a key unless `replace`. */
export async function writeTicketKeyFile(file: string, replace: boolean): Promise<string> {
  if (!replace) {
    const exists = await access(file).then(() => true, () => false);
    if (exists) throw new Error(`${file} exists; give --force to replace it (every instance must then get the new file)`);
  }
  const key = randomBytes(TICKET_KEY_BYTES);
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, key, { mode: 0o600, flag: 'wx' });
  await rename(temp, file);
  return ticketKeyId(key);
}
