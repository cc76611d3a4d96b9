// The engine worker's TypeScript modules, with types stripped once in the main thread. A new thread
// that strips TypeScript itself first initializes Node's stripper (~20-30 ms of CPU); workers are
// replaced often (biscuit-wasm leaks), so they get plain JavaScript through a load hook instead.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface WorkerSources {
  /** file URL -> JavaScript, for the entry module and every local module it imports. */
  sources: Record<string, string>;
  /** The worker's entry: a tiny ES module (data: URL) that installs the hook, then imports `entry`. */
  bootstrap: URL;
}

const importPattern = /\b(?:import|export)\s[^;]*?\bfrom\s*['"](\.{1,2}\/[^'"]+\.ts)['"]|\bimport\s*\(\s*['"](\.{1,2}\/[^'"]+\.ts)['"]\s*\)/g;

/** Node's type stripper, quietly (it announces itself as experimental); undefined when unavailable. */
async function stripper(): Promise<((code: string) => string) | undefined> {
  const module = (await import('node:module')) as { stripTypeScriptTypes?: (code: string) => string };
  const strip = module.stripTypeScriptTypes;
  if (typeof strip !== 'function') return undefined;
  return (code) => {
    const emitWarning = process.emitWarning;
    process.emitWarning = (() => {}) as typeof process.emitWarning;
    try {
      return strip(code);
    } finally {
      process.emitWarning = emitWarning;
    }
  };
}

function bootstrapModule(entry: string): URL {
  const code = `import { registerHooks } from 'node:module';
import { workerData } from 'node:worker_threads';
const sources = workerData.sources ?? {};
registerHooks({ load: (url, context, next) => (Object.hasOwn(sources, url) ? { format: 'module', source: sources[url], shortCircuit: true } : next(url, context)) });
await import(${JSON.stringify(entry)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}

let prepared: Promise<WorkerSources | undefined> | undefined;

/**
 * Strips `entry` and the local `.ts` modules it imports (transitively), once per process. Undefined when
 * Node cannot strip here; a module missing from the map is simply loaded (and stripped) by the worker.
 */
export function workerSources(entry: URL): Promise<WorkerSources | undefined> {
  prepared ??= (async () => {
    // Built JavaScript (dist/) has nothing to strip.
    if (!entry.pathname.endsWith('.ts')) return undefined;
    const strip = await stripper();
    if (!strip) return undefined;
    try {
      const sources: Record<string, string> = {};
      const pending = [entry.href];
      while (pending.length > 0) {
        const url = pending.pop() as string;
        if (Object.hasOwn(sources, url)) continue;
        const code = strip(readFileSync(fileURLToPath(url), 'utf8'));
        sources[url] = code;
        for (const match of code.matchAll(importPattern)) pending.push(new URL(match[1] ?? match[2] ?? '', url).href);
      }
      return { sources, bootstrap: bootstrapModule(entry.href) };
    } catch {
      return undefined;
    }
  })();
  return prepared;
}
