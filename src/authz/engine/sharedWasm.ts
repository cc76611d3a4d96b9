// biscuit-wasm's compiled WebAssembly module, shared by the engine workers. Compiling and warming the
// module up per worker costs ~50 ms of CPU; a compiled module posted to a worker shares its machine code,
// so a replacement worker only instantiates it (~1 ms). The instance, and its memory, stay per worker.
// The main thread instantiates the same module (src/cli/gatehouse.ts), so the process holds one copy of the code.
import { readFile } from 'node:fs/promises';

/** The few WebAssembly JS-API calls used here (the TypeScript lib in use has no WebAssembly types). */
interface WasmApi {
  compile(bytes: Uint8Array): Promise<object>;
  Module: { imports(module: object): { module: string }[]; exports(module: object): { name: string }[] };
  Instance: new (module: object, imports: Record<string, unknown>) => { exports: Record<string, unknown> };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
const exportsKey = Symbol.for('gatehouse.biscuitWasmExports');

/** URL of the package's .wasm file, which its entry module imports as `./biscuit_bg.wasm`. */
function wasmUrl(): URL {
  return new URL('./biscuit_bg.wasm', import.meta.resolve('@biscuit-auth/biscuit-wasm'));
}

let compiled: Promise<object | undefined> | undefined;

/** Compiled once per process; undefined when the package layout is not the expected one. */
export function sharedWasmModule(): Promise<object | undefined> {
  compiled ??= readFile(wasmUrl()).then(
    (bytes) => wasmApi.compile(bytes),
    () => undefined,
  );
  return compiled;
}

/**
 * In a thread, before biscuit-wasm is imported: instantiates `module` and makes the package's
 * `import * as wasm from "./biscuit_bg.wasm"` resolve to that instance (a module load hook).
 * Returns false (and changes nothing) when it cannot, so the normal import still works.
 */
export async function installSharedWasm(module: object | undefined): Promise<boolean> {
  if (module === undefined) return false;
  try {
    const { registerHooks } = await import('node:module');
    const url = wasmUrl().href;
    const imports: Record<string, unknown> = {};
    for (const name of new Set(wasmApi.Module.imports(module).map((i) => i.module))) {
      imports[name] = await import(new URL(name, url).href);
    }
    const instance = new wasmApi.Instance(module, imports);
    (globalThis as Record<symbol, unknown>)[exportsKey] = instance.exports;
    const names = wasmApi.Module.exports(module).map((e) => e.name);
    const source = [
      `const e = globalThis[Symbol.for(${JSON.stringify(exportsKey.description)})];`,
      ...names.map((name, i) => `const v${i} = e[${JSON.stringify(name)}]; export { v${i} as ${JSON.stringify(name)} };`),
    ].join('\n');
    registerHooks({
      load: (target, context, nextLoad) => (target === url ? { format: 'module', source, shortCircuit: true } : nextLoad(target, context)),
    });
    return true;
  } catch {
    return false;
  }
}
