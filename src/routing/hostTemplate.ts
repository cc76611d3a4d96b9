// Host templates: a route's `host` may capture parameters (`{service}--{user}.apps.example.org`), so
// each user's service gets an origin of its own. Captures never span a dot (see template.ts).
import { compileTemplate, fillTemplate, matchTemplate, templateNames, type Template } from './template.ts';

export type HostTemplate = Template;

/** Whether a `host` value is a template (has `{name}` captures). */
export function isHostTemplate(host: string): boolean {
  return host.includes('{');
}

/** The parameter names a host template captures, in order. */
export function hostTemplateParams(host: string): string[] {
  return templateNames(host);
}

/** The host name a template stands for with every capture filled by `x` (for syntax checks). */
export function hostTemplateExample(host: string): string {
  return fillTemplate(host, Object.fromEntries(templateNames(host).map((name) => [name, 'x'])));
}

/** Compiles a lower-cased template; each capture matches one or more letters, digits or `-` (lazily, so `a--b--c` splits at the first `--`). */
export function compileHostTemplate(host: string): HostTemplate {
  return compileTemplate(host.toLowerCase(), 'hostLabel');
}

/** The captures of `host` (already lower case, no port), or undefined when it does not match. */
export function matchHostTemplate(template: HostTemplate, host: string | undefined): Record<string, string> | undefined {
  return host === undefined ? undefined : matchTemplate(template, host);
}
