// Reads a V8 `.cpuprofile` (from node --cpu-prof): self time by module and by function, and the native
// frames (socket writes, TLS) attributed to their JavaScript callers, as Markdown tables.

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the stack a frame belongs to, for the by-module table. */
function moduleOf(url: string, name: string): string {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(idle)' || name === '(program)' || name === '(root)') return name;
  if (url === '') return '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1] as string;
  const src = /\/(src|bench|test)\/(.*)$/.exec(url);
  if (src) return `${src[1]}/${src[2]?.split('/')[0]}`;
  if (url.startsWith('node:')) return url.replace(/^node:internal\/(\w+).*$/, 'node:$1').replace(/^node:(\w+).*$/, 'node:$1');
  return url;
}

export function summarize(profile: Profile, top: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
  const busy = total - idle;
  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  for (const [id, t] of self) {
    const f = byId.get(id)?.callFrame;
    if (!f || f.functionName === '(idle)') continue;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${f.lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + t);
    const m = moduleOf(f.url, f.functionName);
    byModule.set(m, (byModule.get(m) ?? 0) + t);
  }
  const pct = (t: number) => `${((100 * t) / busy).toFixed(1)}%`;
  // Native frames (TLS writes, header writes) say little alone: attribute them to their JS callers.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const nativeCallers = new Map<string, number>();
  for (const [id, t] of self) {
    const f = byId.get(id)?.callFrame;
    if (!f || f.url !== '' || f.functionName.startsWith('(')) continue;
    const chain: string[] = [f.functionName];
    for (let p = parent.get(id); p !== undefined && chain.length < 4; p = parent.get(p)) {
      const pf = byId.get(p)?.callFrame;
      if (pf && pf.functionName) chain.push(`${pf.functionName} ${pf.url.replace(/^.*\/(node_modules|src)\//, '$1/').replace(/^node:internal\//, '')}`);
    }
    const key = chain.join(' < ');
    nativeCallers.set(key, (nativeCallers.get(key) ?? 0) + t);
  }
  const rows = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, t]) => `| ${pct(t)} | ${k} |`);
  return [
    `busy ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s sampled (idle ${((100 * idle) / total).toFixed(0)}%); percentages of busy time`,
    '', '| self | module |', '| ---: | --- |', ...rows(byModule),
    '', '| self | function |', '| ---: | --- |', ...rows(byFunction),
    '', '| self | native frame < its callers |', '| ---: | --- |', ...rows(nativeCallers).slice(0, 15),
  ].join('\n');
}


/**
 * The project's source files on any sampled stack between `from` and `to` (fractions of the profile's
 * time, e.g. 0.4–0.9: under load, after start-up): the files a request is seen to pass through.
 */
export function sourceFilesOnStacks(profile: Profile & { startTime: number; endTime: number }, from = 0.4, to = 0.9): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const span = profile.endTime - profile.startTime;
  const [start, end] = [profile.startTime + span * from, profile.startTime + span * to];
  const sampled = new Set<number>();
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (t >= start && t <= end) sampled.add(id);
  });
  const files = new Set<string>();
  for (const leaf of sampled) {
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      const match = /\/(src\/.*)$/.exec(byId.get(id)?.callFrame.url ?? '');
      if (match?.[1]) files.add(match[1]);
    }
  }
  return [...files].sort();
}
