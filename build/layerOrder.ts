// `node build/layerOrder.ts`: every import under src/ that goes from a later stage of the request path back up
// to an earlier one (run order: listener -> exchange/admission -> forwarders -> upstreams -> audit), and the count.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/**
 * The layers, in run order: a directory may import its own layer, any later layer and the leaves. The
 * exchange layer defines what is handed down (the exchange, its connection, the admitted route), so later
 * stages may name its types (`import type`, flag typesHandedDown) but never call back into it.
 * Rank 0 is the composition and the programs around the request path; nothing in a layer imports them.
 */
export const layers: readonly { rank: number; name: string; typesHandedDown?: true; dirs: Record<string, string> }[] = [
  {
    rank: 0, name: 'programs', dirs: {
      gateway: 'the composition root: builds every stage and wires them together',
      cli: 'the command line: starts the gateway and runs the tools',
      client: 'the tunnel and publish client, a program of its own that reuses the protocol modules',
      demo: 'starts a demo gateway with its own keys and upstream',
      metrics: 'wired by the root to the observers of every layer; no stage imports it',
      cluster: 'membership and shared state, wired by the root into the stages that read it',
      configCheck: 'reads routes.yaml and checks it against every stage (policies, templates, files) for serve and check',
    },
  },
  { rank: 1, name: 'listener', dirs: { listener: 'accepts TLS and UNIX connections and makes each connection context' } },
  {
    rank: 2, name: 'exchange and admission', typesHandedDown: true, dirs: {
      exchange: 'dispatch, and one Exchange per arrival: accounting, records, the admission pipeline, then the way in refuses or carries',
      admission: 'decides whether an exchange may go on: limits, route, decision, upstream',
      session: 'browser sessions and the credential an exchange carries',
      authz: 'the Biscuit decision for an exchange and the engines that evaluate it',
      issuer: 'mints tokens from verified identities, beside the session tokens',
    },
  },
  {
    rank: 3, name: 'forwarders', dirs: {
      forward: 'the ways in (HTTP, WebSocket, CONNECT, tunnel, publish registration): each says what its admission asks, refuses on its transport and carries',
      login: 'the issuer\'s endpoints (device flow, code flow, refresh, logout): gateway pages that end in an issued token or a session',
      portal: 'the gateway pages, carried like any other admitted exchange, and what they issue: the session cookie, hand-off codes, where a sign-in returns to',
    },
  },
  {
    rank: 4, name: 'upstreams', dirs: {
      upstream: 'opens a stream to unix:, tcp: and published: upstreams behind one interface',
      tunnel: 'the tunnel wire protocol and the byte carrier every splice uses',
    },
  },
  { rank: 5, name: 'audit', dirs: { audit: 'the signed log every stage writes its records to' } },
];

/** Leaves: modules every layer may use; a leaf imports only other leaves, not even a layer's types. */
export const leaves: Record<string, string> = {
  config: 'the validated settings every stage is built from',
  tls: 'certificates, peer identities and ticket keys, read by the listener and the upstreams alike',
  pki: 'the development CA and certificate files, used by the tools and the tests',
  token: 'parses, verifies (root key, trusted signers), mints and inspects Biscuit tokens, and words biscuit errors; no request-path state',
  errors: 'the one error and refusal type with stable codes, shared by every stage, the CLI and the client',
  text: 'text shown to people (terminal, portal pages) with control and bidi characters escaped, and long values cut',
  routing: 'what a path, a host or a template means and the route table compiled from the config: pure functions every stage matches against (dispatch, admission, the portal\'s links and next targets, config checks)',
};

const leafRank = Number.POSITIVE_INFINITY;

/** The rank of a top-level directory of src/, or undefined when it is placed nowhere. */
export function rankOf(dir: string): number | undefined {
  if (dir in leaves) return leafRank;
  return layers.find((layer) => dir in layer.dirs)?.rank;
}

function handsDownTypes(dir: string): boolean {
  return layers.some((layer) => layer.typesHandedDown === true && dir in layer.dirs);
}

function layerName(dir: string): string {
  return dir in leaves ? 'leaf' : layers.find((layer) => dir in layer.dirs)?.name ?? 'unplaced';
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

interface ImportLine { line: number; specifier: string; typeOnly: boolean }

/** True when a declaration brings in types alone (`import type`, or every named binding marked `type`). */
function typeOnly(node: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(node)) {
    return node.isTypeOnly || (!!node.exportClause && ts.isNamedExports(node.exportClause)
      && node.exportClause.elements.length > 0 && node.exportClause.elements.every((e) => e.isTypeOnly));
  }
  const clause = node.importClause;
  if (!clause) return false;
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return !clause.name && !!named && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
}

/** Relative module specifiers of every import, export-from and literal dynamic import in one file, with lines. */
function importsOf(file: string, text: string): ImportLine[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: ImportLine[] = [];
  const add = (node: ts.Node, literal: ts.Expression | undefined, types: boolean): void => {
    if (literal && ts.isStringLiteral(literal) && literal.text.startsWith('.')) {
      found.push({ line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, specifier: literal.text, typeOnly: types });
    }
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node, node.moduleSpecifier, typeOnly(node));
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0], false);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

export interface BackArrow { file: string; line: number; from: string; to: string; specifier: string }

/** Every import under srcDir whose target layer runs before the importer's (or is not placed at all). */
export function backArrows(srcDir: string): { arrows: BackArrow[]; unplaced: string[] } {
  const root = resolve(srcDir);
  const topDir = (path: string): string | undefined => {
    const inside = relative(root, path);
    return inside.startsWith('..') || !inside.includes(sep) ? undefined : inside.split(sep)[0];
  };
  const arrows: BackArrow[] = [];
  const seen = new Set<string>();
  for (const file of tsFiles(root)) {
    const from = topDir(file);
    if (from === undefined) continue;
    seen.add(from);
    const fromRank = rankOf(from);
    for (const { line, specifier, typeOnly: types } of importsOf(file, readFileSync(file, 'utf8'))) {
      const to = topDir(resolve(dirname(file), specifier));
      if (to === undefined || to === from) continue;
      const toRank = rankOf(to);
      // Unplaced directories count as arrows both ways, so a new directory must be given its layer.
      const upward = fromRank === undefined || toRank === undefined
        || (fromRank === leafRank ? toRank !== leafRank : toRank < fromRank && !(types && handsDownTypes(to)));
      if (upward) arrows.push({ file: relative(process.cwd(), file), line, from, to, specifier });
    }
  }
  return { arrows, unplaced: [...seen].filter((dir) => rankOf(dir) === undefined).sort() };
}

if (import.meta.main) {
  const { arrows, unplaced } = backArrows(process.argv[2] ?? 'src');
  for (const a of arrows) console.log(`${a.file}:${a.line} ${a.from} (${layerName(a.from)}) -> ${a.to} (${layerName(a.to)}) '${a.specifier}'`);
  if (unplaced.length > 0) console.log(`directories in no layer: ${unplaced.join(', ')}`);
  console.log(`imports from a lower layer back up: ${arrows.length}`);
}
