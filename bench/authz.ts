// Benchmark of the gateway's authorizer (not a test): a mix of tokens through admitRequest and the
// worker-pool authorizer built from routes.yaml defaults. Reports memory growth, failures, replacements, µs.
// Usage: npm run bench:authz [-- --total 1000000 --concurrency 32 --workers <n>]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

// The memory settings of `gatehouse serve`, which restarts itself with them (gatewayMemoryLimits.ts).
(await import('../src/cli/gatewayMemoryLimits.ts')).restartWithGatewayMemoryLimits();
// biscuit-wasm loaded as \`gatehouse serve\` loads it: this thread instantiates the compiled module the
// engine workers share (one copy of the machine code), quietly (no banner, no ExperimentalWarning).
const { installSharedWasm, sharedWasmModule } = await import('../src/authz/engine/sharedWasm.ts');
await installSharedWasm(await sharedWasmModule());
await import('../src/authz/engine/loadBiscuitQuietly.ts');
(await import('../src/authz/engine/warmUp.ts')).warmUpEngine();
const biscuit = await import('@biscuit-auth/biscuit-wasm');
const { configSchema } = await import('../src/config/schema.ts');
const { authorizerOptions } = await import('../src/authz/authorizerOptions.ts');
const { createRequestAuthorizer } = await import('../src/authz/requestAuthorizer.ts');
const { admitRequest } = await import('../src/admission/admitRequest.ts');
const { RouteTable } = await import('../src/routing/routeTable.ts');
type Observer = import('../src/authz/authzObserver.ts').AuthzObserver;
type PeerIdentity = import('../src/tls/peerIdentity.ts').PeerIdentity;
type Admission = import('../src/admission/admitRequest.ts').AdmissionRequest;

const { values: args } = parseArgs({ options: { total: { type: 'string', default: '1000000' }, concurrency: { type: 'string', default: '32' }, samples: { type: 'string', default: '5000' }, workers: { type: 'string' } } });
const total = Number(args.total);
const concurrency = Number(args.concurrency);
const samples = Number(args.samples);
/** authz.workers.count; the configuration default (sized to the machine) when not given. */
const workers = args.workers === undefined ? {} : { count: Number(args.workers) };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-'));
const root = new biscuit.KeyPair(biscuit.SignatureAlgorithm.Ed25519);
fs.writeFileSync(path.join(dir, 'root.pub'), root.getPublicKey().toString() + '\n');
const revocationList = path.join(dir, 'revoked.txt');

const expiry = new Date(Date.now() + 7 * 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
function mint(code: string): string {
  const builder = new biscuit.BiscuitBuilder();
  builder.addCode(code);
  return builder.build(root.getPrivateKey()).toBase64();
}
function attenuate(token: string, code: string): string {
  const block = biscuit.Biscuit.block_builder();
  block.addCode(code);
  return biscuit.Biscuit.fromBase64(token, root.getPublicKey()).appendBlock(block).toBase64();
}
const fingerprint = (n: number) => 'sha256:' + n.toString(16).padStart(2, '0').repeat(32);
function identity(user: string, n: number): PeerIdentity {
  return { cn: user, subject: `CN=${user},O=Site`, issuer: 'CN=Site CA', serial: n.toString(16), fingerprint: fingerprint(n), sans: [{ kind: 'email', value: `${user}@example.org` }], notAfter: '2030-01-01T00:00:00.000Z' };
}

// Tokens: 8 users (plain, bound to their certificate, attenuated to a folder and GET), one revoked, one expired.
const users = Array.from({ length: 8 }, (_, i) => `user${i}`);
const plain = users.map((u, i) => mint(`user("${u}"); group("g${i % 3}"); check if time($t), $t <= ${expiry};`));
const bound = users.map((u, i) => mint(`user("${u}"); check if time($t), $t <= ${expiry}; check if client_fingerprint("${fingerprint(i + 1)}");`));
const narrowed = plain.map((t, i) => attenuate(t, `check if method("GET"); check if path($p), $p.starts_with("/~${users[i]}/notebook/");`));
const revoked = mint(`user("mallory"); check if time($t), $t <= ${expiry};`);
const expired = mint('user("old"); check if time($t), $t <= 2020-01-01T00:00:00Z;');
fs.writeFileSync(revocationList, biscuit.Biscuit.fromBase64(revoked, root.getPublicKey()).getRevocationIdentifiers()[0] + '\n');

interface Case {
  name: string;
  token: string;
  request: (i: number) => Admission;
  allow: boolean;
}
const req = (client: PeerIdentity, target: string, method = 'GET'): Admission => ({ identity: client, sourceIp: '192.0.2.10', protocol: 'http', method, hostHeader: 'gw.example.org', target, token: undefined });
// Path suffixes repeat every 5000 requests: some decisions are reused within the 1 s TTL, many are not.
const suffix = (i: number) => `f${i % 5000}`;
const cases: Case[] = [];
users.forEach((u, k) => {
  const me = identity(u, k + 1);
  cases.push({ name: 'plain own path', token: plain[k]!, allow: true, request: (i) => req(me, `/~${u}/notebook/${suffix(i)}`) });
  cases.push({ name: 'plain same path', token: plain[k]!, allow: true, request: () => req(me, `/~${u}/notebook/index`) });
  cases.push({ name: 'bound, right certificate', token: bound[k]!, allow: true, request: (i) => req(me, `/~${u}/notebook/${suffix(i)}`) });
  cases.push({ name: 'bound, wrong certificate', token: bound[k]!, allow: false, request: (i) => req(identity('thief', 200), `/~${u}/notebook/${suffix(i)}`) });
  cases.push({ name: 'attenuated, allowed', token: narrowed[k]!, allow: true, request: (i) => req(me, `/~${u}/notebook/${suffix(i)}`) });
  cases.push({ name: 'attenuated, POST', token: narrowed[k]!, allow: false, request: (i) => req(me, `/~${u}/notebook/${suffix(i)}`, 'POST') });
  cases.push({ name: "another user's path", token: plain[k]!, allow: false, request: (i) => req(me, `/~${users[(k + 1) % 8]}/notebook/${suffix(i)}`) });
});
cases.push({ name: 'revoked', token: revoked, allow: false, request: (i) => req(identity('mallory', 99), `/~mallory/notebook/${suffix(i)}`) });
cases.push({ name: 'expired', token: expired, allow: false, request: (i) => req(identity('old', 98), `/~old/notebook/${suffix(i)}`) });

const routes = new RouteTable(
  [{ name: 'user-services', path: '/~{user}/{service}/', protocols: ['http'], upstream: `unix:${dir}/run/{user}/{service}.sock`, stripPrefix: true, forwardToken: false, policy: 'allow if user($u), param("user", $u);\nallow if group("g0"), method("GET"), param("service", "status");' }],
  { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 10_000 },
);

let replacements = 0;
const replacedBy: Record<string, number> = {};
const paths: Record<string, number> = {};
const observer: Observer = {
  workerReplaced: (reason) => {
    replacements++;
    replacedBy[reason] = (replacedBy[reason] ?? 0) + 1;
  },
  decided: (_d, p) => (paths[p] = (paths[p] ?? 0) + 1),
};
type Authz = Awaited<ReturnType<typeof createRequestAuthorizer>>;
async function authorizer(cache: Record<string, number> = {}, withObserver = false): Promise<Authz> {
  const authz = configSchema.shape.authz.parse({ rootKey: path.join(dir, 'root.pub'), revocationList, cache, workers });
  return createRequestAuthorizer(authorizerOptions(authz, withObserver ? { observer } : {}));
}

const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
/** Anonymous and file-backed (mostly the node binary's code) shares of RSS, in MB; empty off Linux. */
function rssParts(): string {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
    return ` (anonymous ${(kb('RssAnon') / 1024).toFixed(1)} MB, file-backed ${(kb('RssFile') / 1024).toFixed(1)} MB)`;
  } catch {
    return '';
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** Sequential calls, one at a time: median µs per decision. */
async function latency(a: Authz, make: (i: number) => { token: string; request: Admission }): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < samples; i++) {
    const { token, request } = make(i);
    const t0 = performance.now();
    const admission = await admitRequest({ routes, authorizer: a }, { ...request, token });
    times.push((performance.now() - t0) * 1000);
    if (!admission.allow && admission.refusal.status >= 500 && admission.refusal.status !== 502) throw new Error(`call failed: ${admission.refusal.reason}`);
  }
  return median(times);
}

// 1. The mixed run, first, in a fresh process: RSS is measured from the moment the authorizer is ready.
global.gc?.();
const rssStart = process.memoryUsage().rss;
const a = await authorizer({}, true);
const rssReady = process.memoryUsage().rss;
const rssReadyParts = rssParts();
let rssPeak = rssReady;
let rssPeakAfterWarmUp = 0;
const warmUpCalls = Math.min(50_000, Math.floor(total / 10));
let rssWarm = 0;
const sampler = setInterval(() => {
  const rss = process.memoryUsage().rss;
  rssPeak = Math.max(rssPeak, rss);
  if (rssWarm > 0) rssPeakAfterWarmUp = Math.max(rssPeakAfterWarmUp, rss);
}, 50);
const trend: string[] = [];
let failed = 0;
let wrong = 0;
let next = 0;
const failures: string[] = [];
const started = performance.now();
let reported = started;
async function client(): Promise<void> {
  while (next < total) {
    const i = next++;
    const c = cases[i % cases.length]!;
    const admission = await admitRequest({ routes, authorizer: a }, { ...c.request(i), token: c.token });
    // 502: allowed, then the (absent) upstream socket; the authorization itself succeeded.
    const allowed = admission.allow || admission.refusal.status === 502;
    if (!admission.allow && admission.refusal.status === 503) {
      failed++;
      if (failures.length < 5) failures.push(admission.refusal.reason);
    } else if (allowed !== c.allow) {
      wrong++;
      if (failures.length < 5) failures.push(`${c.name}: ${admission.allow ? 'allowed' : admission.refusal.reason}`);
    }
    if (i === warmUpCalls) rssWarm = process.memoryUsage().rss;
    if (i % 20_000 === 0 && i > 0) {
      const now = performance.now();
      const line = `${i} calls, ${((now - started) / 1000).toFixed(0)} s, rss ${mb(process.memoryUsage().rss)} MB (main heap ${mb(process.memoryUsage().heapUsed)} MB), replacements ${replacements}, ${Math.round(20_000 / ((now - reported) / 1000))} calls/s`;
      trend.push(line);
      process.stdout.write(`  ${line}\n`);
      reported = now;
    }
  }
}
await Promise.all(Array.from({ length: concurrency }, () => client()));
const seconds = (performance.now() - started) / 1000;
clearInterval(sampler);
const rssEnd = process.memoryUsage().rss;
const rssEndParts = rssParts();
const stats = a.stats();
await a.close();

process.stdout.write(`
mixed run: ${total} authorizations through admitRequest, ${cases.length} token/request kinds, ${concurrency} in flight
  time            ${seconds.toFixed(1)} s (${Math.round(total / seconds)} decisions/s, ${((seconds * 1e6) / total).toFixed(1)} µs per decision on average)
  paths           ${JSON.stringify(paths)}
  failed calls    ${failed} (503), wrong outcomes ${wrong}${failures.length ? `\n  first failures  ${failures.join('\n                  ')}` : ''}
  replacements    ${replacements} ${JSON.stringify(replacedBy)}
  workers at end  ${stats.workers.length} (authz.workers.count ${workers.count ?? 'default'}): ${stats.workers.map((w) => `#${w.slot}: ${mb(w.wasmBytes)} MB wasm, ${w.authorizations} calls`).join('; ')}
  RSS             process start ${mb(rssStart)} MB, authorizer ready ${mb(rssReady)} MB, after ${warmUpCalls} calls ${mb(rssWarm)} MB, peak ${mb(rssPeak)} MB, end ${mb(rssEnd)} MB
  growth          end - ready ${mb(rssEnd - rssReady)} MB, peak - ready ${mb(rssPeak - rssReady)} MB (limit 100 MB); after warm-up: end ${mb(rssEnd - rssWarm)} MB, peak ${mb(rssPeakAfterWarmUp - rssWarm)} MB
  RSS parts       ready${rssReadyParts}, end${rssEndParts}
`);

// 2. Median µs per decision on each path, one call at a time.
const me = identity('user0', 1);
const latencies: Record<string, number> = {};
{
  const cold = await authorizer({ tokens: 0, decisions: 0 });
  latencies['cold (no caches: verify + authorize)'] = await latency(cold, (i) => ({ token: plain[i % 8]!, request: req(identity(users[i % 8]!, (i % 8) + 1), `/~${users[i % 8]}/notebook/x${i}`) }));
  await cold.close();
  const tokenCached = await authorizer({ decisionTtlMs: 0 });
  latencies['verified-token cached (authorize only)'] = await latency(tokenCached, (i) => ({ token: plain[0]!, request: req(me, `/~user0/notebook/x${i}`) }));
  await tokenCached.close();
  const decisionCached = await authorizer();
  latencies['decision cached'] = await latency(decisionCached, () => ({ token: plain[0]!, request: req(me, '/~user0/notebook/index') }));
  await decisionCached.close();
}
for (const [name, us] of Object.entries(latencies)) process.stdout.write(`median ${name}: ${us.toFixed(1)} µs (${samples} sequential calls)\n`);
fs.rmSync(dir, { recursive: true, force: true });
process.exitCode = failed > 0 || wrong > 0 || rssEnd - rssReady > 100 * 1024 * 1024 ? 1 : 0;
