// The tokens an issuer gave out, as its `token.issue` audit records name them: what
// `gatehouse token revoke --user NAME` revokes (every token issued to NAME, by authority-block id).
import { linesOfFiles } from '../audit/auditLines.ts';

export interface IssuedTokenSearch {
  /** The issued token's user (`token.user` of the record). */
  user?: string;
  /** The IdP subject the login came from (`detail.idp.subject`). */
  idpSubject?: string;
  /** The login the tokens came from (`detail.login.id`): its first token and every refresh of it (logout). */
  loginId?: string;
}

/** Revocation ids (authority block, lowercase hex) of the tokens the records in `files` say were issued to the match. */
export async function issuedRevocationIds(files: readonly string[], search: IssuedTokenSearch): Promise<string[]> {
  const ids = new Set<string>();
  for await (const { bytes } of linesOfFiles(files)) {
    // Cheap filter before parsing: most records are requests.
    if (bytes.indexOf('"token.issue"') < 0) continue;
    if (search.loginId !== undefined && bytes.indexOf(search.loginId) < 0) continue;
    let record: { event?: unknown; decision?: unknown; token?: { user?: unknown; revocationIds?: unknown }; detail?: { idp?: { subject?: unknown }; login?: { id?: unknown } } };
    try {
      record = JSON.parse(bytes.toString('utf8')) as typeof record;
    } catch {
      continue; // a torn last line; `audit verify` is the tool that reports it
    }
    if (record.event !== 'token.issue' || record.decision !== 'allow') continue;
    if (search.user !== undefined && record.token?.user !== search.user) continue;
    if (search.idpSubject !== undefined && record.detail?.idp?.subject !== search.idpSubject) continue;
    if (search.loginId !== undefined && record.detail?.login?.id !== search.loginId) continue;
    const [id] = Array.isArray(record.token?.revocationIds) ? record.token.revocationIds : [];
    if (typeof id === 'string' && /^[0-9a-f]+$/i.test(id)) ids.add(id.toLowerCase());
  }
  return [...ids];
}
