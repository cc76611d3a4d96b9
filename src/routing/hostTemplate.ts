// Host templates: a route's `host` may capture parameters (`{service}--{user}.apps.example.org`), so
// each user's service gets an origin of its own. Captures never span a dot.

export interface HostTemplate {
  pattern: RegExp;
  names: string[];
}

const PARAM = /\{([a-z][a-z0-9_]*)\}/g;

/** Whether a `host` value is a template (has `{name}` captures). */
export function isHostTemplate(host: string): boolean {
  return host.includes('{');
}

/** The parameter names a host template captures, in order. */
export function hostTemplateParams(host: string): string[] {
  return [...host.matchAll(PARAM)].map((m) => m[1] as string);
}

/** The host name a template stands for with every capture filled by `x` (for syntax checks). */
export function hostTemplateExample(host: string): string {
  return host.replace(PARAM, 'x');
}

/** Compiles a lower-cased template; each capture matches one or more letters, digits or `-` (lazily, so `a--b--c` splits at the first `--`). */
export function compileHostTemplate(host: string): HostTemplate {
  const names: string[] = [];
  let source = '^';
  for (const piece of host.toLowerCase().split(/(\{[a-z][a-z0-9_]*\})/)) {
    if (piece.startsWith('{') && piece.endsWith('}')) {
      names.push(piece.slice(1, -1));
      source += '([a-z0-9-]+?)';
    } else {
      source += piece.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return { pattern: new RegExp(source + '$'), names };
}

/** The captures of `host` (already lower case, no port), or undefined when it does not match. */
export function matchHostTemplate(template: HostTemplate, host: string | undefined): Record<string, string> | undefined {
  if (host === undefined) return undefined;
  const found = template.pattern.exec(host);
  if (!found) return undefined;
  const params: Record<string, string> = {};
  template.names.forEach((name, i) => (params[name] = found[i + 1] as string));
  return params;
}
