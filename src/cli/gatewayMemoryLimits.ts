// Restarts a gateway process once, before anything is loaded (same pid, arguments and descriptors),
// under one glibc malloc arena (MALLOC_ARENA_MAX=1) and a capped V8 young generation (--max-semi-space-size=4).
//
// Arenas: glibc gives each thread that allocates its own arena (up to 8 per core), and never hands back
// what those arenas once held. V8 compiles biscuit-wasm's largest function (188 KB of WebAssembly) with
// ~46 MB of short-lived compiler memory, and tiers hot functions up on its background threads; each
// of those threads keeps the high-water mark in its arena. With one arena the freed memory is reused
// instead (measured, idle gateway after 21 requests: ~167 MiB with one arena every time; 145-211 MiB
// with two, depending on which thread compiled what; ~200-250 MiB with the default).
// glibc reads the variable once, when the process starts: hence the re-execution.
// Young generation: without the cap V8 grows it to ~64 MB under load; the bin scripts' `#!` line sets the
// flag, but a gateway started as `node .../gatehouse.js` (service managers, tests, benchmarks) did not get it.
// A value the operator set (the variable, the flag on the command line or in NODE_OPTIONS) is kept.
// Other C libraries ignore the variable. Node without process.execve (before 22.15) starts as before.

const arenaVariable = 'MALLOC_ARENA_MAX';
const arenas = '1';
const semiSpaceFlag = '--max-semi-space-size';
const semiSpaceMiB = '4';

type Execve = (file: string, args: string[], env: Record<string, string | undefined>) => never;

/** Replaces this process with the same command under those two settings; returns when it does not. */
export function restartWithGatewayMemoryLimits(): void {
  if (process.platform !== 'linux') return;
  const execve = (process as unknown as { execve?: Execve }).execve;
  if (typeof execve !== 'function') return;
  const hasArenas = process.env[arenaVariable] !== undefined;
  const hasSemiSpace = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith(semiSpaceFlag));
  if (hasArenas && hasSemiSpace) return;
  const nodeArgs = hasSemiSpace ? process.execArgv : [`${semiSpaceFlag}=${semiSpaceMiB}`, ...process.execArgv];
  try {
    execve.call(process, process.execPath, [process.execPath, ...nodeArgs, ...process.argv.slice(1)], { ...process.env, [arenaVariable]: process.env[arenaVariable] ?? arenas });
  } catch {
    // Could not re-execute (e.g. the binary was replaced on disk): run on with the defaults.
  }
}
