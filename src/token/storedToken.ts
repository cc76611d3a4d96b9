// A token file's text as every command reads it: the token alone (one line, as `token mint` writes it), or
// the JSON object `gatehouse login` writes (the token under "token", with what renewal needs beside it).

export type StoredTokenText = { ok: true; token: string; fields?: Readonly<Record<string, unknown>> } | { ok: false; error: string };

/** The token in `text` (trimmed); `fields` is the whole JSON object when the file is one. */
export function parseStoredToken(text: string): StoredTokenText {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{')) return { ok: true, token: trimmed };
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    return { ok: false, error: 'is not valid JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { ok: false, error: 'holds no "token"' };
  const fields = parsed as Record<string, unknown>;
  return typeof fields.token === 'string' ? { ok: true, token: fields.token.trim(), fields } : { ok: false, error: 'holds no "token"' };
}
