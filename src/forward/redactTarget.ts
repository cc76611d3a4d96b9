// What of a request target may be written to the audit log: credentials some clients put in the
// query string (OAuth's access_token, API keys, signatures) are replaced, the rest kept as sent.

/** Query parameter names whose values are credentials (compared case-insensitively, `-`/`_` alike). */
const SECRET_NAMES = new Set(['access_token', 'token', 'auth', 'authorization', 'key', 'api_key', 'apikey', 'password', 'passwd', 'pass', 'secret', 'client_secret', 'session', 'sessionid', 'jwt', 'code', 'signature', 'sig', 'x_amz_signature', 'x_amz_credential', 'refresh_token', 'id_token', 'bearer']);

/** Replaces the value of every credential-named query parameter with `[redacted]`. */
export function redactTarget(target: string): string {
  const q = target.indexOf('?');
  if (q < 0) return target;
  const query = target.slice(q + 1).split('&').map((pair) => {
    const eq = pair.indexOf('=');
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    let name: string;
    try {
      name = decodeURIComponent(rawName.replace(/\+/g, ' '));
    } catch {
      name = rawName;
    }
    return eq >= 0 && SECRET_NAMES.has(name.trim().toLowerCase().replace(/-/g, '_')) ? `${rawName}=[redacted]` : pair;
  });
  return `${target.slice(0, q)}?${query.join('&')}`;
}
