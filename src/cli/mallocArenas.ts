// Starts the gateway with glibc's malloc limited to two arenas (MALLOC_ARENA_MAX=2), by re-executing
// the process once (same pid, arguments and descriptors) before anything else is loaded.
//
// Why: glibc gives each thread that allocates its own arena (up to 8 per core), and never hands back
// what those arenas once held. V8 compiles biscuit-wasm's largest function (188 KB of WebAssembly) with
// ~46 MB of short-lived compiler memory, and tiers hot functions up on its background threads; each
// of those threads keeps the high-water mark in its arena. With two arenas the freed memory is reused
// instead: measured on the 2-core machine, an idle gateway at ~130 MiB instead of ~177 MiB. The variable
// must be in the environment when the process starts (glibc reads it once), hence the re-execution.
// Where the variable is already set (an operator's choice, or this very step), nothing happens; other C
// libraries ignore it. Node without process.execve (before 22.15) starts as before.

const variable = 'MALLOC_ARENA_MAX';
const arenas = '2';

type Execve = (file: string, args: string[], env: Record<string, string | undefined>) => never;

/** Replaces this process with the same command under MALLOC_ARENA_MAX=2; returns when it does not. */
export function restartWithFewerMallocArenas(): void {
  if (process.platform !== 'linux' || process.env[variable] !== undefined) return;
  const execve = (process as unknown as { execve?: Execve }).execve;
  if (typeof execve !== 'function') return;
  try {
    execve.call(process, process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, [variable]: arenas });
  } catch {
    // Could not re-execute (e.g. the binary was replaced on disk): run on with the default arenas.
  }
}
