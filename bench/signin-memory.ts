// Sign-in memory: N valid browser sign-ins (POST /.well-known/gatehouse/session, a new token each time)
// against one gateway; its RSS (whole process tree), the main thread's biscuit-wasm memory and the
// workers' at the start, after the sign-ins, and after a settle time.
// Usage: node bench/signin-memory.ts [--sign-ins 10000 --concurrency 8 --settle-seconds 15]
import { parseArgs } from 'node:util';
import { inOneHour, mintRaw, startHarness } from '../test/support/gatewayHarness.ts';
import { freePort } from '../test/support/localServices.ts';
import { treeRssMiB } from './support/procStats.ts';
import { poolAs, send } from './support/harnessClients.ts';

const { values: args } = parseArgs({
  options: {
    'sign-ins': { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '8' },
    'settle-seconds': { type: 'string', default: '15' },
  },
});
const signIns = Number(args['sign-ins']);
const concurrency = Number(args.concurrency);

const metricsPort = await freePort();
const routes = `  - name: web
    path: /web/
    upstream: unix:run/none.sock
    policy: |
      allow if user($u);
`;
const h = await startHarness({ routes, extraTop: `metrics:\n  listen: 127.0.0.1:${metricsPort}\nlimits:\n  requestsPerSecond: 1000000\n  requestBurst: 1000000\n` });
const gatewayPid = h.proc.pid ?? 0;
const alice = await h.pki.client('alice');

/** RSS and WebAssembly memory (MiB) as the gateway reports them now. */
async function memory(): Promise<{ rssMiB: number; mainWasmMiB: number; workerWasmMiB: number }> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const values = (name: string) => [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].map((m) => Number(m[1]));
  const mib = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
  return {
    rssMiB: Math.round(treeRssMiB(gatewayPid) * 10) / 10,
    mainWasmMiB: mib(values('gatehouse_main_thread_wasm_memory_bytes')[0] ?? NaN),
    workerWasmMiB: mib(values('gatehouse_authz_worker_wasm_memory_bytes').reduce((a, b) => a + b, 0)),
  };
}

try {
  const pool = poolAs(h, alice, concurrency);
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const signIn = (i: number) => send(pool, 'POST', '/.well-known/gatehouse/session', form, new URLSearchParams({ token: mintRaw(h.rootKey.privateKey, `user("alice"); group("g${i}"); check if time($t), $t <= ${inOneHour()};`) }).toString());
  // Warm-up: the first sign-ins compile and allocate what every later one reuses.
  for (let i = 0; i < 50; i++) await signIn(-i);
  const start = await memory();
  const statuses = new Map<number, number>();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < signIns) {
        const status = await signIn(next++);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await pool.close();
  const after = await memory();
  await new Promise((r) => setTimeout(r, Number(args['settle-seconds']) * 1000));
  const settled = await memory();
  console.log(JSON.stringify({ signIns, seconds: Math.round(seconds * 10) / 10, perSecond: Math.round(signIns / seconds), statuses: Object.fromEntries(statuses), start, after, settled }, null, 2));
  console.log(`RSS ${start.rssMiB} -> ${after.rssMiB} -> ${settled.rssMiB} MiB after settle (${(settled.rssMiB - start.rssMiB).toFixed(1)} MiB; goal < +20 MB); main-thread wasm ${start.mainWasmMiB} -> ${settled.mainWasmMiB} MiB`);
} finally {
  await h.stop();
}
