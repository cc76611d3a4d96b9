#!/usr/bin/env -S node --max-semi-space-size=4
// The `gatehouse` command run from the TypeScript sources, for development (`npm start`, the tests):
// Node >= 22.18 strips the types, so there is no build step between a checkout and a running gateway.
// The installed package runs the JavaScript that `npm run build` emits (dist/lib/cli/gatehouse.js).
await import('../src/cli/gatehouse.ts');
