// Generated sections inside hand-written Markdown: text between a BEGIN and an END marker comment is
// replaced by the generator, everything around it is left as written.

/** One generated section: which file, which marker name, and the Markdown that belongs between the markers. */
export interface GeneratedSection {
  file: string;
  marker: string;
  content: string;
}

export function beginMarker(marker: string): string {
  return `<!-- BEGIN GENERATED: ${marker} (npm run docs:reference writes it; do not edit by hand) -->`;
}

export function endMarker(marker: string): string {
  return `<!-- END GENERATED: ${marker} -->`;
}

/** Where a section's markers are in `text`, or why they cannot be used. */
function locate(text: string, marker: string): { ok: true; start: number; end: number } | { ok: false; error: string } {
  const begin = beginMarker(marker);
  const end = endMarker(marker);
  const start = text.indexOf(begin);
  const stop = text.indexOf(end);
  if (start < 0 || stop < 0) return { ok: false, error: `the markers of ${marker} are missing` };
  if (text.indexOf(begin, start + 1) >= 0 || text.indexOf(end, stop + 1) >= 0) return { ok: false, error: `the markers of ${marker} appear twice` };
  if (stop < start) return { ok: false, error: `the END marker of ${marker} comes before its BEGIN marker` };
  return { ok: true, start: start + begin.length, end: stop };
}

/** The text between a section's markers as committed (without the newlines next to the markers). */
export function sectionText(text: string, marker: string): { ok: true; value: string } | { ok: false; error: string } {
  const at = locate(text, marker);
  if (!at.ok) return at;
  return { ok: true, value: text.slice(at.start, at.end).replace(/^\n/, '').replace(/\n$/, '') };
}

/** `text` with the section's content put between its markers. */
export function withSection(text: string, marker: string, content: string): { ok: true; value: string } | { ok: false; error: string } {
  const at = locate(text, marker);
  if (!at.ok) return at;
  return { ok: true, value: `${text.slice(0, at.start)}\n${content.replace(/\n+$/, '')}\n${text.slice(at.end)}` };
}
