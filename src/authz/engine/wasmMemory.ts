// Reads the size of biscuit-wasm's WebAssembly memory in this thread. The package does not export
// its module, but importing the same .wasm URL yields the same instance (ES modules are cached by URL).

/** A function returning the current memory size in bytes, or -1 when it cannot be read. */
export async function wasmMemoryReader(): Promise<() => number> {
  try {
    const url = new URL('./biscuit_bg.wasm', import.meta.resolve('@biscuit-auth/biscuit-wasm'));
    const module = (await import(url.href)) as { memory?: unknown };
    const memory = module.memory as { buffer?: unknown } | undefined;
    if (memory?.buffer instanceof ArrayBuffer) return () => (memory.buffer as ArrayBuffer).byteLength;
  } catch {
    // Another package layout: the pool falls back to recycling by count.
  }
  return () => -1;
}
