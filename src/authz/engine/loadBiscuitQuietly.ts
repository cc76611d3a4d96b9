// Loads biscuit-wasm without its noise: the library prints "biscuit-wasm loading" to stdout (which
// would corrupt `token mint` output) and Node warns that importing a .wasm module is experimental.
// Import this before anything else imports biscuit-wasm; later imports share the same instance.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning: string | Error, ...rest: unknown[]): void {
  if (String(warning instanceof Error ? warning.message : warning).includes('WebAssembly module')) return;
  return (emitWarning as (w: string | Error, ...r: unknown[]) => void).call(process, warning, ...rest);
} as typeof process.emitWarning;

const log = console.log;
console.log = () => {};
try {
  await import('@biscuit-auth/biscuit-wasm');
} finally {
  console.log = log;
}
