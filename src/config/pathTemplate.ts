// Route templates: `{param}` captures inside route paths and upstream addresses.
// `/~{user}/{service}/` captures `user` and `service`; the upstream may reuse them.

/** Names of template parameters: lower case letter first, then lower case, digits, `_`. */
export const paramNamePattern = /^[a-z][a-z0-9_]*$/;

export type TemplateResult = { ok: true; params: string[] } | { ok: false; message: string };

/** The `{param}` names in `text`, in order, or what is wrong with its braces. */
export function templateParams(text: string): TemplateResult {
  const params: string[] = [];
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf('{', i);
    const close = text.indexOf('}', i);
    if (close !== -1 && (open === -1 || close < open)) return { ok: false, message: `unmatched "}" at character ${close + 1}` };
    if (open === -1) break;
    const end = text.indexOf('}', open);
    if (end === -1) return { ok: false, message: `unclosed "{" at character ${open + 1}` };
    const name = text.slice(open + 1, end);
    if (!paramNamePattern.test(name)) {
      return { ok: false, message: `bad parameter name "{${name}}": use lower case letters, digits and _, starting with a letter` };
    }
    params.push(name);
    i = end + 1;
  }
  return { ok: true, params };
}

/**
 * Checks a route path template: literal text plus `{param}` captures, each parameter once,
 * never two captures side by side, no `.`/`..`/empty segments, no `?`, `#` or white space.
 */
export function checkPathTemplate(path: string): TemplateResult {
  const parsed = templateParams(path);
  if (!parsed.ok) return parsed;
  const seen = new Set<string>();
  for (const name of parsed.params) {
    if (seen.has(name)) return { ok: false, message: `parameter {${name}} is captured twice` };
    seen.add(name);
  }
  if (/\}\{/.test(path)) return { ok: false, message: 'two captures side by side ("}{") cannot be told apart' };
  if (/[\s?#]/.test(path)) return { ok: false, message: 'paths must not contain white space, "?" or "#"' };
  const segments = path.split('/').slice(1);
  for (const [index, segment] of segments.entries()) {
    if (segment === '.' || segment === '..') return { ok: false, message: `"${segment}" segments are not allowed in paths` };
    if (segment === '' && index < segments.length - 1) return { ok: false, message: 'empty path segment ("//")' };
  }
  return parsed;
}

/**
 * Checks a tunnel name template (`{service}.{user}`): letters, digits, `_ . -` and captures, each
 * parameter once, never two captures side by side (nothing would tell where one ends).
 */
export function checkTunnelTemplate(name: string): TemplateResult {
  const parsed = templateParams(name);
  if (!parsed.ok) return parsed;
  const seen = new Set<string>();
  for (const param of parsed.params) {
    if (seen.has(param)) return { ok: false, message: `parameter {${param}} is captured twice` };
    seen.add(param);
  }
  if (/\}\{/.test(name)) return { ok: false, message: 'two captures side by side ("}{") cannot be told apart' };
  if (!/^[A-Za-z0-9_.{}-]+$/.test(name)) return { ok: false, message: 'tunnel names are letters, digits, _ . - and {param} captures' };
  if (/^[._-]/.test(name.replace(/\{[^}]*\}/g, 'x'))) return { ok: false, message: 'a tunnel name starts with a letter or digit' };
  return parsed;
}
