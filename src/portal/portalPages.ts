// The gateway's own pages, rendered on the server as plain HTML: no script, no CDN, one inline style
// allowed by its hash. Every value from a certificate or token is escaped.
import { createHash } from 'node:crypto';
import { displayDatalog, displayLines } from '../text/displayText.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import type { LocalPath } from './nextTarget.ts';
import type { VerifiedToken } from '../session/sessionToken.ts';
import { LOGIN_PATH } from '../routing/reservedPaths.ts';

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}dt{font-weight:600}dd{margin:0 0 .5rem 0;word-break:break-all}
textarea{width:100%;font-family:monospace}pre{background:#f4f4f4;padding:.5rem;overflow-x:auto;white-space:pre-wrap}
.error{background:#fde8e8;border:1px solid #d33;padding:.5rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .4rem;text-align:left}`;

const STYLE_HASH = `sha256-${createHash('sha256').update(STYLE).digest('base64')}`;

/**
 * Headers of every gateway page: nothing runs, nothing loads from elsewhere, forms post only to the
 * gateway (plus `formTargets`: the origins a sign-in redirect may continue to), no framing, no caching.
 */
export function pageHeaders(formTargets: readonly string[] = []): Record<string, string> {
  return {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': `default-src 'none'; style-src '${STYLE_HASH}'; form-action 'self'${formTargets.map((o) => ` ${o}`).join('')}; frame-ancestors 'none'; base-uri 'none'`,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the page's own form posts.
    'referrer-policy': 'same-origin',
    'cross-origin-opener-policy': 'same-origin',
  };
}

/** Text for HTML: markup characters as references, and controls and bidi overrides written as visible escapes. */
export function escapeHtml(value: string): string {
  return displayLines(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>
`;
}

function certificateSection(identity: PeerIdentity): string {
  return `<h2>Your certificate</h2>
<dl id="certificate">
<dt>Common name</dt><dd id="client-cn">${escapeHtml(identity.cn || '(none)')}</dd>
<dt>Subject</dt><dd>${escapeHtml(identity.subject)}</dd>
<dt>Issuer</dt><dd>${escapeHtml(identity.issuer)}</dd>
<dt>Fingerprint</dt><dd>${escapeHtml(identity.fingerprint)}</dd>
<dt>Valid until</dt><dd>${escapeHtml(identity.notAfter)}</dd>
</dl>`;
}

export interface SignInView {
  identity: PeerIdentity;
  next?: string;
  error?: string;
  /** The display name of the site's identity provider, when the gateway runs an issuer. */
  provider?: string;
}

/** Where "Sign in with <IdP>" starts the code flow; the login pages check `next` again there. */
export const BROWSER_LOGIN_PATH = `${LOGIN_PATH}/browser`;

/** The sign-in page: who the certificate says you are, "Sign in with <IdP>" when there is one, and a form to paste a token. */
export function signInPage(view: SignInView): string {
  const error = view.error ? `<p class="error" id="error">${escapeHtml(view.error)}</p>` : '';
  const provider = view.provider === undefined ? '' : `
<h2>Sign in with ${escapeHtml(view.provider)}</h2>
<p>Your site's identity provider confirms who you are; the gateway then signs this browser in for this certificate. No token to copy.</p>
<p><a id="sign-in-provider" href="${escapeHtml(`${BROWSER_LOGIN_PATH}${view.next ? `?next=${encodeURIComponent(view.next)}` : ''}`)}">Sign in with ${escapeHtml(view.provider)}</a></p>`;
  return layout('Sign in to gatehouse', `${error}
${certificateSection(view.identity)}${provider}
<h2>Sign in with a token</h2>
<p>Paste the token your site gave you (the text of the token file). It is checked against this
certificate and kept only in a cookie of this browser, bound to this certificate, for one working day at most.</p>
<form method="post" action="/.well-known/gatehouse/session">
<textarea name="token" rows="6" required autocomplete="off" spellcheck="false" id="token"></textarea>
<input type="hidden" name="next" value="${escapeHtml(view.next ?? '')}">
<p><button type="submit" id="sign-in">Sign in</button></p>
</form>`);
}

export interface PortalView {
  identity: PeerIdentity;
  token: VerifiedToken;
  sessionEndsAt: Date;
  /** Extra sections (routes, audit views) rendered by others, already HTML. */
  sections?: string[];
}

/** The signed-in portal: identity, what the session's token may do, sign-out. */
export function portalPage(view: PortalView): string {
  const { token } = view;
  const blocks = token.blocks
    .map((b) => `<h3>Block ${b.index}${b.index === 0 ? ' (authority)' : ''}</h3><pre>${escapeHtml(displayDatalog(b.source ?? ''))}</pre>`)
    .join('\n');
  return layout('gatehouse', `<p>Signed in as <strong id="user">${escapeHtml(token.user)}</strong>${token.groups.length > 0 ? ` (groups: ${escapeHtml(token.groups.join(', '))})` : ''}.</p>
<dl>
<dt>Session ends</dt><dd id="session-ends">${escapeHtml(view.sessionEndsAt.toISOString())}</dd>
<dt>Token expires</dt><dd>${escapeHtml(token.expiresAt?.toISOString() ?? 'no expiry stated')}</dd>
<dt>Revocation ids</dt><dd>${token.revocationIds.map(escapeHtml).join('<br>')}</dd>
</dl>
<form method="post" action="/.well-known/gatehouse/session/end"><button type="submit" id="sign-out">Sign out</button></form>
${(view.sections ?? []).join('\n')}
${certificateSection(view.identity)}
<h2>What the session's token allows</h2>
${blocks}`);
}

/** A short page for refusals on the gateway's own paths. */
export function messagePage(title: string, message: string): string {
  return layout(title, `<p id="message">${escapeHtml(message)}</p><p><a href="/.well-known/gatehouse/">Back to sign-in</a></p>`);
}

/** Asks before handing the session to a service's origin (a page elsewhere could otherwise send the browser here). */
export function continuePage(user: string, target: string, next: string): string {
  return layout('Open a service', `<p>Signed in as <strong id="user">${escapeHtml(user)}</strong>.</p>
<p>Open <strong id="target">${escapeHtml(target)}</strong> with this session?</p>
<form method="post" action="/.well-known/gatehouse/session/handoff">
<input type="hidden" name="next" value="${escapeHtml(next)}">
<p><button type="submit" id="continue">Continue</button> <a href="/.well-known/gatehouse/">Back to the portal</a></p>
</form>`);
}

/**
 * Lands on a service's origin with its new cookie; the refresh is a navigation of this origin, so the
 * Strict cookie goes with it. Only a path the gateway rebuilt: never a scheme-relative or absolute URL.
 */
export function landingPage(next: LocalPath): string {
  return layout('Signed in', `<meta http-equiv="refresh" content="0;url=${escapeHtml(next)}">
<p>Signed in. <a id="continue" href="${escapeHtml(next)}">Continue</a>.</p>`);
}
