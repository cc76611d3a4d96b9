// Loads routes.yaml: YAML syntax, the schema, cross-key checks and the files it names, reporting
// every problem with its file, line and key; on success, the config with absolute paths.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseDocument, visit } from 'yaml';
import { configSchema, type GatewayConfig } from '../config/schema.ts';
import { keyText, type ConfigError, type ConfigIssue } from '../config/configError.ts';
import { positionInValue, positionOf, positionOfKey } from '../config/yamlPositions.ts';
import { schemaIssues } from '../config/schemaIssues.ts';
import { routeChecks } from './routeChecks.ts';
import { fileChecks } from './fileChecks.ts';
import { resolvePaths } from '../config/resolvePaths.ts';
import { configWarnings } from './configWarnings.ts';
import { issuerChecks } from './issuerChecks.ts';

export { formatConfigError, type ConfigError } from '../config/configError.ts';

/** `warnings`: what loads but may not work as written (see configWarnings.ts), sorted like the errors. */
export type ConfigResult = { ok: true; config: GatewayConfig; file: string; warnings: ConfigError[] } | { ok: false; errors: ConfigError[]; warnings: ConfigError[] };

function byPlace(a: ConfigError, b: ConfigError, configFile: string): number {
  const fileOrder = Number(a.file !== configFile) - Number(b.file !== configFile) || a.file.localeCompare(b.file);
  return fileOrder || a.line - b.line || a.column - b.column;
}

/**
 * Reads and validates the config at `file`. Never throws for problems in the config or the files
 * it names: they all come back as errors, sorted by file and line.
 */
export async function loadConfig(file: string): Promise<ConfigResult> {
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    return { ok: false, errors: [{ file, line: 0, column: 0, key: '(document)', message: `cannot read config: ${reason}` }], warnings: [] };
  }

  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const errors = doc.errors.map((e): ConfigError => {
      const { line, col } = lines.linePos(e.pos[0]);
      const message = e.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '');
      return { file, line, column: col, key: '(document)', message: `YAML syntax: ${message}` };
    });
    return { ok: false, errors, warnings: [] };
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias to an anchor defined later, or an alias bomb.
    let offset = 0;
    visit(doc, {
      Alias(_, node) {
        if (node.range && !node.resolve(doc)) {
          offset = node.range[0];
          return visit.BREAK;
        }
        return undefined;
      },
    });
    const { line, col } = lines.linePos(offset);
    return { ok: false, errors: [{ file, line, column: col, key: '(document)', message: `YAML: ${(error as Error).message}` }], warnings: [] };
  }
  const configDir = path.dirname(path.resolve(file));
  const parsed = configSchema.safeParse(data);
  const issuer = issuerChecks(data, configDir);
  const issues: ConfigIssue[] = [
    ...issuer.errors,
    ...(parsed.success ? [] : schemaIssues(parsed.error.issues, data)),
    ...routeChecks(data, configDir),
    ...(await fileChecks(data, file)),
  ];

  const place = (issue: ConfigIssue): ConfigError => {
    const key = keyText(issue.path);
    const extra = issue.warning ? { warning: true } : {};
    if (issue.at) return { ...issue.at, key, message: issue.message, ...extra };
    const at =
      issue.unknownKey !== undefined
        ? positionOfKey(doc, lines, issue.path.slice(0, -1), issue.unknownKey)
        : issue.lineInValue !== undefined
          ? positionInValue(doc, lines, source, issue.path, issue.lineInValue)
          : positionOf(doc, lines, issue.path);
    return { file, line: at.line, column: at.column, key, message: issue.message, ...extra };
  };
  const warnings = [...configWarnings(data, configDir), ...issuer.warnings]
    .map(place)
    .sort((a, b) => byPlace(a, b, file));
  if (issues.length > 0 || !parsed.success) {
    return { ok: false, errors: issues.map(place).sort((a, b) => byPlace(a, b, file)), warnings };
  }
  const config = resolvePaths(parsed.data, configDir);
  return { ok: true, config, file: path.resolve(file), warnings };
}
