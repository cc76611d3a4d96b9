#!/usr/bin/env -S node --max-semi-space-size=4 --experimental-wasm-modules
// Entry point of the `gatehouse` command: built into dist/lib/cli/gatehouse.js (the package's `bin`), and run
// from the sources by bin/gatehouse.js during development.
// --max-semi-space-size=4 caps V8's young generation, which otherwise grows to ~64 MB under load
// (bench/authz.ts: 1M authorizations grew RSS by 210 MB without it, 89 MB with it).
// --experimental-wasm-modules lets Node 20 import biscuit-wasm's .wasm (Node 24 accepts it and needs
// no flag); the warning it brings is silenced by loadBiscuitQuietly.

/** Commands that use biscuit-wasm. The others (tunnel, pki, --help) are spared its ~70 MB. */
const biscuitCommands = new Set(['serve', 'demo', 'check', 'token', 'authz']);
const clientCommands = new Set(['tunnel', 'publish']);

// biscuit-wasm is loaded first, quietly (see the module for why); later imports share that instance.
if (biscuitCommands.has(process.argv[2] ?? '')) await import('../authz/loadBiscuitQuietly.ts');
// The client commands load the client's command line alone (as the laptop bundle does): no module of the
// gateway, the token tooling or the PKI is parsed or kept in memory by a long-running `gatehouse tunnel`.
if (clientCommands.has(process.argv[2] ?? '')) await import('./client.ts');
else await import('./main.ts');
