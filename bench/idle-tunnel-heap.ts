// What one idle CONNECT tunnel holds in the gateway: RSS and a heap snapshot of `gatehouse serve` before
// and after opening --tunnels idle tunnels; prints the constructors whose retained self size grew most.
// Usage: node bench/idle-tunnel-heap.ts [--tunnels 2000] [--top 25]
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchEnv, startServer } from './support/benchEnv.ts';
import { holdConnections } from './support/loadGenerator.ts';
import { treeRssMiB } from './support/procStats.ts';

const { values: args } = parseArgs({ options: { tunnels: { type: 'string', default: '2000' }, top: { type: 'string', default: '25' } } });
const count = Number(args.tunnels);

interface Snapshot { snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }; nodes: number[]; strings: string[] }

/** Self size and count per node name (constructor for objects, "(closure) name" for closures). */
function sizesByName(file: string): Map<string, { size: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [iType, iName, iSize] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + iType] as number] as string;
    const name = `${type === 'object' ? '' : `(${type}) `}${type === 'string' || type === 'concatenated string' || type === 'sliced string' ? '' : snap.strings[snap.nodes[i + iName] as number]}`;
    const e = out.get(name) ?? { size: 0, count: 0 };
    e.size += snap.nodes[i + iSize] as number;
    e.count += 1;
    out.set(name, e);
  }
  return out;
}

async function snapshot(pid: number, dir: string, before: Set<string>): Promise<string> {
  process.kill(pid, 'SIGUSR2');
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    // Written in one go; wait until its size stops changing.
    if (files[0]) {
      const f = join(dir, files[0]);
      const a = readFileSync(f).length;
      await new Promise((r) => setTimeout(r, 1500));
      if (readFileSync(f).length === a && a > 0) return f;
    }
  }
}

const env = await createBenchEnv();
const server = await startServer(env, 'gatehouse', 1, 'gatehouse', ['--heapsnapshot-signal=SIGUSR2']);
await new Promise((r) => setTimeout(r, 2000));
const rss0 = treeRssMiB(server.pid);
const first = await snapshot(server.pid, env.dir, new Set());
const held = await holdConnections({ mode: 'idle', target: server.target, count, concurrency: 32, token: env.token, connectRoute: 'hold' });
await new Promise((r) => setTimeout(r, 2000));
const rss1 = treeRssMiB(server.pid);
const second = await snapshot(server.pid, env.dir, new Set([first.split('/').at(-1) as string]));
const a = sizesByName(first);
const b = sizesByName(second);
const grown = [...b].map(([name, e]) => ({ name, size: e.size - (a.get(name)?.size ?? 0), count: e.count - (a.get(name)?.count ?? 0) })).sort((x, y) => y.size - x.size);
const heapGrowth = grown.reduce((n, g) => n + g.size, 0);
process.stdout.write(`${held.opened} idle tunnels (${held.errors} failed): RSS ${rss0.toFixed(0)} -> ${rss1.toFixed(0)} MiB, ${(((rss1 - rss0) * 1024) / held.opened).toFixed(1)} KiB per tunnel; JS heap (self sizes) +${(heapGrowth / 1024 / held.opened).toFixed(1)} KiB per tunnel\n\n| bytes per tunnel | objects per tunnel | name |\n| ---: | ---: | --- |\n`);
for (const g of grown.slice(0, Number(args.top))) process.stdout.write(`| ${(g.size / held.opened).toFixed(0)} | ${(g.count / held.opened).toFixed(2)} | ${g.name} |\n`);
await held.release();
await server.stop();
await env.stop();
