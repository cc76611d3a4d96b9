#!/usr/bin/env -S node --max-semi-space-size=4 --experimental-wasm-modules
// Entry point of the `gatehouse` command: built into dist/lib/cli/gatehouse.js (the package's `bin`), and run
// from the sources by bin/gatehouse.js during development.
// --max-semi-space-size=4 caps V8's young generation, which otherwise grows to ~64 MB under load
// (bench/authz.ts: 1M authorizations grew RSS by 210 MB without it, 89 MB with it).
// --experimental-wasm-modules lets Node 20 import biscuit-wasm's .wasm (Node 24 accepts it and needs
// no flag); the warning it brings is silenced by loadBiscuitQuietly.

/** Commands that run a gateway: restarted once with its memory settings (see gatewayMemoryLimits.ts). */
const gatewayCommands = new Set(['serve', 'demo']);
if (gatewayCommands.has(process.argv[2] ?? '')) (await import('./gatewayMemoryLimits.ts')).restartWithGatewayMemoryLimits();

/** Commands that use biscuit-wasm. The others (tunnel, pki, --help) are spared its ~70 MB. */
const biscuitCommands = new Set(['serve', 'demo', 'check', 'token', 'authz', 'cluster']);
const clientCommands = new Set(['tunnel', 'publish', 'login', 'logout']);

// biscuit-wasm is loaded first, quietly (see the module for why); later imports share that instance.
// This thread instantiates the same compiled module the engine workers get: one copy of the machine code
// in the process instead of a second compilation of the .wasm by the ES module loader.
if (biscuitCommands.has(process.argv[2] ?? '')) {
  const { installSharedWasm, sharedWasmModule } = await import('../authz/engine/sharedWasm.ts');
  await installSharedWasm(await sharedWasmModule());
  await import('../authz/engine/loadBiscuitQuietly.ts');
  // A gateway compiles biscuit-wasm's code here, synchronously, before it holds anything else: V8 needs
  // ~46 MB for a moment to compile the largest function, and freed at the top of the heap that memory
  // goes back to the system at once (compiled later, in a worker, it often stayed resident: 130 vs 160 MiB
  // idle). The code is shared, so the workers find it compiled.
  if (gatewayCommands.has(process.argv[2] ?? '')) (await import('../authz/engine/warmUp.ts')).warmUpEngine();
}
// The client commands load the client's command line alone (as the laptop bundle does): no module of the
// gateway, the token tooling or the PKI is parsed or kept in memory by a long-running `gatehouse tunnel`.
if (clientCommands.has(process.argv[2] ?? '')) await import('./client.ts');
else await import('./main.ts');
