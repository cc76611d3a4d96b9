// biscuit-wasm throws plain objects ({"FailedLogic":{...}}, {"RunLimit":"Timeout"}, ...) instead of
// Errors; these helpers render them and read the shapes the authorization stage acts on.
import { cutText } from '../text/cutText.ts';
import { biscuitErrorWords } from './biscuitErrorWords.ts';

/**
 * A token's author chooses its checks, and biscuit prints a check in full (a set literal of 540
 * strings of 2,700 characters is 1.46 MB of text from a 7.8 KB token): each rule is cut here, where it
 * leaves the engine, so no reason built from them is long (evaluateToken lists at most a few).
 */
const RULE_CHARS = 1024;

/** One line for the audit log and the operator: the library's error in words (cut like a rule: it may quote the token). */
export function biscuitErrorText(error: unknown): string {
  return cutText(biscuitErrorWords(error), RULE_CHARS);
}

/** A WebAssembly trap (a Rust panic inside biscuit-wasm): the engine's state can no longer be trusted. */
export function isWasmTrap(error: unknown): boolean {
  return error instanceof Error && error.name === 'RuntimeError';
}

export interface FailedCheck {
  /** `block 0 check 1` or `authorizer check 0`. */
  origin: string;
  /** True when the check comes from the token (a block), not from the route policy. */
  fromToken: boolean;
  rule: string;
}

export type Failure =
  | { kind: 'no-matching-policy'; checks: FailedCheck[] }
  | { kind: 'unauthorized'; policy: { allow: boolean; index: number }; checks: FailedCheck[] }
  | { kind: 'run-limit'; detail: string }
  | { kind: 'execution'; detail: string }
  | { kind: 'other'; detail: string };

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function failedChecks(value: unknown): FailedCheck[] {
  if (!Array.isArray(value)) return [];
  const checks: FailedCheck[] = [];
  for (const item of value) {
    if (!isObject(item)) continue;
    const block = item['Block'];
    const authorizer = item['Authorizer'];
    if (isObject(block)) {
      checks.push({ origin: `block ${String(block['block_id'])} check ${String(block['check_id'])}`, fromToken: true, rule: cutText(String(block['rule']), RULE_CHARS) });
    } else if (isObject(authorizer)) {
      checks.push({ origin: `route policy check ${String(authorizer['check_id'])}`, fromToken: false, rule: cutText(String(authorizer['rule']), RULE_CHARS) });
    } else {
      checks.push({ origin: 'check', fromToken: false, rule: cutText(JSON.stringify(item), RULE_CHARS) });
    }
  }
  return checks;
}

/** Classifies what `authorizeWithLimits` threw. */
export function classifyFailure(error: unknown): Failure {
  if (isObject(error)) {
    const logic = error['FailedLogic'];
    if (isObject(logic)) {
      const none = logic['NoMatchingPolicy'];
      if (isObject(none)) return { kind: 'no-matching-policy', checks: failedChecks(none['checks']) };
      const unauthorized = logic['Unauthorized'];
      if (isObject(unauthorized) && isObject(unauthorized['policy'])) {
        const policy = unauthorized['policy'];
        const allow = typeof policy['Allow'] === 'number';
        const index = Number(allow ? policy['Allow'] : policy['Deny']);
        return { kind: 'unauthorized', policy: { allow, index }, checks: failedChecks(unauthorized['checks']) };
      }
    }
    if ('RunLimit' in error) return { kind: 'run-limit', detail: JSON.stringify(error['RunLimit']) };
    if ('Execution' in error) {
      const inner = error['Execution'];
      if (isObject(inner) && 'RunLimit' in inner) return { kind: 'run-limit', detail: JSON.stringify(inner['RunLimit']) };
      return { kind: 'execution', detail: biscuitErrorText({ Execution: inner }) };
    }
  }
  return { kind: 'other', detail: biscuitErrorText(error) };
}
