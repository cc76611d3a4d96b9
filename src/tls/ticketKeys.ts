// TLS session-ticket keys from `tls.ticketKeys` (one file shared by every instance, so a session made on
// one resumes on another) and the session-id context that decides which sessions may be resumed at all.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

/** What Node's `ticketKeys` takes: 16 bytes key name, 16 bytes HMAC key, 16 bytes AES key. */
export const TICKET_KEY_BYTES = 48;

export type TicketKeyRead = { ok: true; key: Buffer; id: string } | { ok: false; reason: string };

/** `sha256:` and the first 16 hex digits of the key's hash: names the key in the audit log without revealing it. */
export function ticketKeyId(key: Buffer): string {
  return `sha256:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}

/** 48 raw bytes (`openssl rand 48`), or the same as one line of base64 or hex (`openssl rand -base64 48`). */
function decodeTicketKey(content: Buffer): Buffer | undefined {
  if (content.length === TICKET_KEY_BYTES) return content;
  const text = content.toString('latin1').trim();
  if (/^[0-9a-fA-F]{96}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]{64}$/.test(text)) return Buffer.from(text, 'base64');
  return undefined;
}

/** Reads the shared key; refuses a file every local user can read (whoever holds it can decrypt resumed sessions). */
export function readTicketKeyFile(file: string): TicketKeyRead {
  let content: Buffer;
  try {
    if (statSync(file).mode & 0o004) return { ok: false, reason: `${file} can be read by every user; chmod o-r it (it decrypts session tickets)` };
    content = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file}: ${code ?? (err as Error).message}` };
  }
  const key = decodeTicketKey(content);
  if (!key) return { ok: false, reason: `${file} holds ${content.length} bytes; expected ${TICKET_KEY_BYTES} bytes of key material, raw or as one line of base64 or hex (gatehouse pki ticket-key)` };
  return { ok: true, key, id: ticketKeyId(key) };
}

/** A key for one process alone: without `tls.ticketKeys` sessions resume only on the instance that made them. */
export function processTicketKey(): { key: Buffer; id: string } {
  const key = randomBytes(TICKET_KEY_BYTES);
  return { key, id: 'process-local' };
}

/**
 * OpenSSL resumes a session only where the session-id context matches. A resumed session skips the
 * certificate check, so the context is derived from what that check depended on (the client CA and the
 * CRL): instances sharing both resume each other's sessions, and a new CRL or CA forces a full handshake
 * (a revoked certificate cannot ride an old ticket past the new list).
 */
export function sessionContextOf(clientCa: Buffer | string, crlPem: string | undefined): string {
  // Node hands the string to SSL_CTX_set_session_id_context, which takes at most 32 bytes.
  return createHash('sha256').update('gatehouse session context v1\0').update(clientCa).update('\0').update(crlPem ?? '').digest('hex').slice(0, 32);
}
