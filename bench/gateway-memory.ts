// Gateway memory at rest: RSS (and its anonymous / file-backed parts) of a real `gatehouse serve`,
// idle, after one HTTP request and after 21. Usage: node bench/gateway-memory.ts [--workers n]
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { curl, inOneHour, mintRaw, startHarness } from '../test/support/gatewayHarness.ts';

const { values: args } = parseArgs({ options: { workers: { type: 'string' } } });
const routes = `  - name: demo
    path: /demo/
    protocols: [http]
    upstream: unix:run/demo.sock
    policy: allow if user($u);
`;
const h = await startHarness({ routes, ...(args.workers !== undefined && { authzExtra: `  workers:\n    count: ${Number(args.workers)}\n` }) });
mkdirSync(join(h.dir, 'run'), { recursive: true });
const upstream = createServer((_req, res) => res.end('ok'));
await new Promise<void>((ok) => upstream.listen(join(h.dir, 'run', 'demo.sock'), ok));
const pid = h.proc.pid as number;
const settle = () => new Promise((resolve) => setTimeout(resolve, 500));

function report(label: string): void {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const mib = (key: string) => (Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN) / 1024).toFixed(1);
  console.log(`${label.padEnd(18)} RSS ${mib('VmRSS')} MiB (peak ${mib('VmHWM')}; anonymous ${mib('RssAnon')}, file-backed ${mib('RssFile')}), threads ${/^Threads:\s+(\d+)/m.exec(status)?.[1]}`);
}

await new Promise((resolve) => setTimeout(resolve, 1500));
report('idle');
const client = await h.pki.client('alice');
const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
const first = await curl(h, '/demo/0', { client, token });
if (first.status !== 200) throw new Error(`request answered ${first.status}: ${first.body}`);
await settle();
report('after 1 request');
for (let i = 1; i <= 20; i++) await curl(h, `/demo/${i}`, { client, token });
await settle();
report('after 21 requests');
await h.stop();
upstream.close();
