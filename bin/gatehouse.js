#!/usr/bin/env -S node --max-semi-space-size=4
// The `gatehouse` command run from the TypeScript sources, for development (`npm start`, the tests,
// `npm run gatehouse -- ARGS` in a checkout): Node >= 22.18 strips the types, so there is no build step
// between a checkout and a running gateway. The installed package runs the JavaScript that `npm run build`
// emits (dist/lib/cli/gatehouse.js).

// npm runs scripts in the package's directory; `npm run gatehouse -- ARGS` works where it was typed, so
// the relative paths in ARGS (and the defaults, routes.yaml, certs/...) mean what they mean there.
if (process.env.npm_lifecycle_event === 'gatehouse' && process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
await import('../src/cli/gatehouse.ts');
