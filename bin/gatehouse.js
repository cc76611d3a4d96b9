#!/usr/bin/env -S node --max-semi-space-size=4
// Entry point of the `gatehouse` command. The sources are TypeScript that Node (>= 22.18) runs
// directly by stripping types, so there is no build step between a checkout and a running gateway.
// --max-semi-space-size=4 caps V8's young generation, which otherwise grows to ~64 MB under load
// (measured in bench/authz.ts: 1M authorizations grew RSS by 210 MB without it, 89 MB with it).

// biscuit-wasm is loaded first, quietly (see the module for why). The tunnel client never uses it,
// and its commands load their modules lazily, so it is spared the ~70 MB; so is the publisher.
if (process.argv[2] !== 'tunnel' && process.argv[2] !== 'publish') await import('../src/authz/loadBiscuitQuietly.ts');
await import('../src/cli/main.ts');
