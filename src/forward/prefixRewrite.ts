// What a browser needs from a proxy that strips a route's prefix (nginx proxy_redirect and
// proxy_cookie_path): redirects and cookie paths from the upstream put back under the prefix.

/** The route's external prefix (`/~alice/jupyter`, no trailing slash) and the host the client addressed. */
export interface PrefixRewrite {
  prefix: string;
  host?: string;
}

/**
 * A Location from the upstream, as the client must see it. A path (`/tree`) gets the prefix; an absolute
 * URL naming the gateway's own host (the upstream saw that Host) gets the prefix and `https`. Relative
 * references (`tree`, `../x`) already resolve under the prefix in the browser; other sites stay as they are.
 */
export function rewriteLocation(value: string, rewrite: PrefixRewrite): string {
  const location = value.trim();
  if (location.startsWith('/') && !location.startsWith('//')) return rewrite.prefix + location;
  if (rewrite.host === undefined || !/^https?:\/\//i.test(location)) return value;
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return value;
  }
  if (url.host.toLowerCase() !== rewrite.host.toLowerCase() && url.hostname.toLowerCase() !== rewrite.host.toLowerCase()) return value;
  return `https://${rewrite.host}${rewrite.prefix}${url.pathname}${url.search}${url.hash}`;
}

/** A Set-Cookie from the upstream with its `Path` under the prefix; a cookie without Path already defaults to the request's directory. */
export function rewriteCookiePath(setCookie: string, rewrite: PrefixRewrite): string {
  return setCookie.replace(/(;\s*path\s*=\s*)([^;]*)/gi, (_, lead: string, path: string) => {
    const p = path.trim();
    return p.startsWith('/') ? `${lead}${rewrite.prefix}${p}` : `${lead}${p}`;
  });
}
