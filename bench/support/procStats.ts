// Resident memory and CPU time of a process and all its descendants, read from /proc: a server's
// cost is its whole tree (nginx master + workers, gatehouse primary + gateway processes + threads).
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100;

function stat(pid: number): { ppid: number; cpuTicks: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), cpuTicks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined;
  }
}

/** `pid` and every process below it. */
export function processTree(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const child = Number(name);
    if (!Number.isInteger(child)) continue;
    const s = stat(child);
    if (s) parents.set(s.ppid, [...(parents.get(s.ppid) ?? []), child]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of parents.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** Sum of VmRSS over the tree, MiB. */
export function treeRssMiB(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    try {
      kb += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // exited meanwhile
    }
  }
  return kb / 1024;
}

/** CPU seconds (user + system) used so far by the tree's live processes. */
export function treeCpuSeconds(pid: number): number {
  return processTree(pid).reduce((n, p) => n + (stat(p)?.cpuTicks ?? 0), 0) / TICKS_PER_SECOND;
}

/** Measures the cores a process tree keeps busy while `body` runs. */
export async function cpuDuring<T>(pid: number | undefined, body: () => Promise<T>): Promise<{ value: T; cores: number | undefined }> {
  const c0 = pid ? treeCpuSeconds(pid) : 0;
  const t0 = performance.now();
  const value = await body();
  const seconds = (performance.now() - t0) / 1000;
  return { value, cores: pid ? (treeCpuSeconds(pid) - c0) / seconds : undefined };
}
