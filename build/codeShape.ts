// `node build/codeShape.ts [DIR...]`: the size figures the code standards ask about, per directory (default src):
// files, lines, files over 300 lines and functions over 80 lines (each with its file, line and length).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const longFile = 300;
const longFunction = 80;

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** Name of a function node for the report: its own name, or the variable or property it is assigned to. */
function nameOf(node: ts.FunctionLikeDeclaration): string {
  if (node.name) return node.name.getText();
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)) return parent.name.getText();
  return '<anonymous>';
}

function longFunctions(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isArrowFunction(node) || ts.isFunctionExpression(node) || ts.isConstructorDeclaration(node)) {
      const first = source.getLineAndCharacterOfPosition(node.getStart()).line;
      const lines = source.getLineAndCharacterOfPosition(node.getEnd()).line - first + 1;
      if (lines > longFunction) found.push(`${file}:${first + 1} ${nameOf(node)} (${lines} lines)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

for (const dir of process.argv.length > 2 ? process.argv.slice(2) : ['src']) {
  const files = tsFiles(dir);
  let lines = 0;
  const bigFiles: string[] = [];
  const bigFunctions: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const count = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
    lines += count;
    if (count > longFile) bigFiles.push(`${file} (${count} lines)`);
    bigFunctions.push(...longFunctions(relative('.', file), text));
  }
  console.log(`${dir}: ${files.length} files, ${lines} lines`);
  console.log(`  files over ${longFile} lines: ${bigFiles.length}${bigFiles.map((f) => `\n    ${f}`).join('')}`);
  console.log(`  functions over ${longFunction} lines: ${bigFunctions.length}${bigFunctions.map((f) => `\n    ${f}`).join('')}`);
}
