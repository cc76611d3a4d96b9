#!/usr/bin/env node
// Entry point of the `gatehouse` command. The sources are TypeScript that Node (>= 22.18) runs
// directly by stripping types, so there is no build step between a checkout and a running gateway.

// biscuit-wasm imports its .wasm as an ES module: Node warns that this is experimental, and the
// library prints "biscuit-wasm loading" to stdout, which would corrupt `token mint` output. Load it
// once here, quietly; every later import gets the same instance.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
  if (String(warning instanceof Error ? warning.message : warning).includes('WebAssembly module')) return;
  return emitWarning.call(process, warning, ...rest);
};
const log = console.log;
console.log = () => {};
try {
  await import('@biscuit-auth/biscuit-wasm');
} finally {
  console.log = log;
}
await import('../src/cli/main.ts');
