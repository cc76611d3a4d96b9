// The body of an engine worker: owns one biscuit-wasm instance, verifies tokens (keeping a few
// parsed ones), checks revocation before any Datalog runs, and evaluates route policies.
import { refuse } from '../../errors/refusal.ts';
import { MessagePort, parentPort, workerData } from 'node:worker_threads';
import type { Biscuit } from '@biscuit-auth/biscuit-wasm';
import { earliestExpiry } from '../../token/inspectToken.ts';
import { biscuitErrorText, isWasmTrap } from '../../token/biscuitErrors.ts';
import { authorityUser, evaluateToken, revocationIdsOf } from '../policy/evaluateToken.ts';
import { parsePublicKey } from '../../token/rootKey.ts';
import { revokedDecision } from '../policy/revokedDecision.ts';
import { ROOT_SIGNER, trustedSigners } from '../../token/signers.ts';
import { idpOfAuthority } from '../../token/issuedBy.ts';
import { runSessionWork } from './sessionWork.ts';
import { describeBlocks } from '../policy/tokenBlocks.ts';
import type { Decision, IssuedBy, TokenBlock } from '../types.ts';
import { wasmMemoryReader } from './wasmMemory.ts';
import { warmUpEngine } from './warmUp.ts';
import type { EngineWorkerInit, FromWorker, SessionResult, ToWorker, TokenInfo } from './workerProtocol.ts';

interface ParsedToken {
  biscuit: Biscuit;
  /** Who signed it: `root`, or the name of a trusted issuer (the `signer(...)` fact). */
  signer: string;
  revocationIds: string[];
  expiresAt?: number;
  /** Multi-block tokens only: what each block is, sent to the main thread once with the token's info. */
  blocks?: TokenBlock[];
  /** Tokens of a trusted issuer: its name and the IdP identity, sent with the token's info like `blocks`. */
  issuedBy?: IssuedBy;
}

const port = parentPort;
if (port === null) throw new Error('workerCalls.ts runs only as a worker thread');
const init = workerData as EngineWorkerInit;
const results = init.results instanceof MessagePort ? init.results : port;
const send = (message: FromWorker): void => results.postMessage(message);

function fail(reason: string): never {
  send({ type: 'failed', reason });
  process.exit(1);
}

const trusted = trustedSigners({ root: init.rootKey, issuers: init.issuers });
if (!trusted.ok) fail(trusted.reason);
const signers = trusted.signers;
const scope: Record<string, string> = {};
/** `ed25519/<hex>` -> its `authz.externalKeys` name, to name a third-party block's signer. */
const signerNames = new Map<string, string>();
for (const [name, text] of Object.entries(init.externalKeys)) {
  signerNames.set(text.toLowerCase(), name);
  const parsed = parsePublicKey(text, `external key ${name}`);
  if (!parsed.ok) fail(parsed.reason);
  // The form addCodeWithParameters expects for a scope parameter; anything else panics the engine.
  scope[name] = parsed.key.toDatalogParameter();
  parsed.key.free();
}
let revoked = new Set(init.revoked);
const wasmBytes = await wasmMemoryReader();
const parsedTokens = new Map<string, ParsedToken>();
let count = 0;
let poisoned = false;

function sourcesOf(token: Biscuit): string[] {
  const sources: string[] = [];
  for (let i = 0; i < token.countBlocks(); i++) sources.push(token.getBlockSource(i));
  return sources;
}

/** Earliest expiry from the printed block sources: only used to cut a cached decision's life shorter. */
function expiryOf(sources: readonly string[]): number | undefined {
  const text = earliestExpiry(sources);
  const at = text === undefined ? Number.NaN : Date.parse(text);
  return Number.isFinite(at) ? at : undefined;
}

function parse(token: string): { ok: true; value: ParsedToken; cached: boolean } | { ok: false; reason: string } {
  const known = parsedTokens.get(token);
  if (known) {
    parsedTokens.delete(token);
    parsedTokens.set(token, known);
    return { ok: true, value: known, cached: true };
  }
  const signed = signers.verify(token);
  if (!signed.ok) {
    if (isWasmTrap(signed.error)) poisoned = true;
    return { ok: false, reason: `token does not parse or verify: ${signed.reason}` };
  }
  const { token: biscuit, signer } = signed;
  // The sources are printed once per parse anyway (expiry); describing the blocks reuses them.
  const sources = sourcesOf(biscuit);
  const expiresAt = expiryOf(sources);
  const revocationIds = revocationIdsOf(biscuit);
  const blocks = describeBlocks(token, sources, revocationIds, signerNames);
  const idp = signer === ROOT_SIGNER ? undefined : idpOfAuthority(sources[0] ?? '');
  const issuedBy: IssuedBy | undefined = signer === ROOT_SIGNER ? undefined : { signer, ...(idp !== undefined && { idp }) };
  const value: ParsedToken = { biscuit, signer, revocationIds, ...(expiresAt !== undefined && { expiresAt }), ...(blocks !== undefined && { blocks }), ...(issuedBy !== undefined && { issuedBy }) };
  if (init.parsedTokens <= 0) return { ok: true, value, cached: false };
  parsedTokens.set(token, value);
  if (parsedTokens.size > init.parsedTokens) {
    const [oldest] = parsedTokens.keys();
    if (oldest !== undefined) {
      parsedTokens.get(oldest)?.biscuit.free();
      parsedTokens.delete(oldest);
    }
  }
  return { ok: true, value, cached: true };
}

function authorize(message: Extract<ToWorker, { type: 'authorize' }>): { decision: Decision; info?: TokenInfo } {
  const parsed = parse(message.token);
  if (!parsed.ok) {
    return { decision: { allow: false, ...refuse('GH_TOKEN_INVALID', parsed.reason) }, info: { valid: false, reason: parsed.reason } };
  }
  const token = parsed.value;
  const info: TokenInfo | undefined = message.wantInfo
    ? { valid: true, revocationIds: token.revocationIds, ...(token.expiresAt !== undefined && { expiresAt: token.expiresAt }), ...(token.blocks !== undefined && { blocks: token.blocks }), ...(token.issuedBy !== undefined && { issuedBy: token.issuedBy }) }
    : undefined;
  if (info) send({ type: 'info', id: message.id, info });
  try {
    // Revocation is checked on every block's id before any Datalog runs.
    if (revokedDecision(token.revocationIds, revoked)) {
      return { decision: revokedDecision(token.revocationIds, revoked, authorityUser(token.biscuit)) as Decision };
    }
    const decision = evaluateToken(token.biscuit, message.route, { ...message.facts, signer: token.signer }, {
      scope,
      observe: (detail) => {
        if (detail.fault) poisoned = true;
      },
    });
    // The main thread already holds this token's ids: do not copy them back on every call.
    if (!message.wantInfo && decision.revocationIds) decision.revocationIds = [];
    return { decision };
  } finally {
    if (!parsed.cached) token.biscuit.free();
  }
}

/** This thread's CPU time in ms (Node >= 23.9), else the wall clock. */
const threadCpu = (process as { threadCpuUsage?: () => { user: number; system: number } }).threadCpuUsage;
function engineClock(): number {
  if (typeof threadCpu !== 'function') return performance.now();
  const usage = threadCpu.call(process);
  return (usage.user + usage.system) / 1000;
}

/** Sign-in work: a failure the session code did not expect becomes a refusal that says so. */
function sessionWork(message: Extract<ToWorker, { type: 'session' }>): SessionResult {
  try {
    return runSessionWork(message.work, signers, (ids) => ids.some((id) => revoked.has(id)));
  } catch (error) {
    if (isWasmTrap(error)) poisoned = true;
    const reason = `sign-in token work failed: ${biscuitErrorText(error)}`;
    return message.work.op === 'verify'
      ? { op: 'verify', check: { ok: false, ...refuse('GH_TOKEN_CHECK_UNAVAILABLE', reason) } }
      : { op: 'mint', minted: { ok: false, reason } };
  }
}

port.on('message', (message: ToWorker) => {
  if (message.type === 'revocations') {
    revoked = new Set(message.ids);
    return;
  }
  count += 1;
  // The engine time of each call is measured here, where it is spent, as this thread's CPU time (a
  // thread preempted on a busy machine is not charged for the wait): the pool charges it to the caller.
  const started = engineClock();
  const end = () => ({ id: message.id, wasmBytes: wasmBytes(), count, engineMs: engineClock() - started, ...(poisoned && { poisoned: true }) });
  if (message.type === 'session') {
    const result = sessionWork(message);
    send({ type: 'session-result', result, ...end() });
    return;
  }
  let outcome: { decision: Decision; info?: TokenInfo };
  try {
    outcome = authorize(message);
  } catch (error) {
    if (isWasmTrap(error)) poisoned = true;
    outcome = { decision: { allow: false, ...refuse('GH_AUTHZ_UNAVAILABLE', `route ${message.route.name}: unexpected authorization error: ${biscuitErrorText(error)}`) } };
  }
  send({ type: 'result', ...outcome, ...end() });
});

// Warm up before taking work: biscuit-wasm compiles lazily, and a cold first call is slow.
const selfTest = warmUpEngine();
if (!selfTest.allow) fail(`authorization engine self-test failed: ${selfTest.reason}`);
send({ type: 'ready', wasmBytes: wasmBytes() });
