// Checks of the authz settings the schema cannot express: external keys must be real public keys,
// and a hard deadline must leave the engine at least its own time limit.
import { PublicKey, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import type { ConfigIssue } from '../config/configError.ts';

type Raw = Record<string, unknown>;

function record(value: unknown): Raw | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Raw) : undefined;
}

const algorithms: Record<string, SignatureAlgorithm> = { ed25519: SignatureAlgorithm.Ed25519, secp256r1: SignatureAlgorithm.Secp256r1 };

/** Names declared in authz.externalKeys (policies may write `trusting {name}` for these). */
export function externalKeyNames(root: Raw): string[] {
  return Object.keys(record(record(root.authz)?.externalKeys) ?? {});
}

function checkExternalKeys(authz: Raw, issues: ConfigIssue[]): void {
  for (const [name, value] of Object.entries(record(authz.externalKeys) ?? {})) {
    const match = typeof value === 'string' ? /^(ed25519|secp256r1)\/([0-9a-fA-F]+)$/.exec(value.trim()) : null;
    if (!match) continue; // the schema reports the form
    try {
      PublicKey.fromString((match[2] ?? '').toLowerCase(), algorithms[match[1] ?? ''] ?? SignatureAlgorithm.Ed25519).free();
    } catch {
      issues.push({ path: ['authz', 'externalKeys', name], message: `not a valid ${match[1]} public key` });
    }
  }
}

function checkDeadline(limits: Raw | undefined, fallback: Raw | undefined, at: (string | number)[], issues: ConfigIssue[]): void {
  const deadline = limits?.deadlineMs;
  const maxTime = limits?.maxTimeMicros ?? fallback?.maxTimeMicros ?? 10_000;
  if (typeof deadline === 'number' && typeof maxTime === 'number' && deadline * 1000 < maxTime) {
    issues.push({ path: [...at, 'deadlineMs'], message: `the hard deadline (${deadline} ms) is shorter than maxTimeMicros (${maxTime} µs): every slow-but-legal run would be cut off` });
  }
}

/** Every problem with authz.externalKeys and the deadlines in authz.limits and routes[].limits. */
export function authzChecks(root: Raw): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const authz = record(root.authz);
  if (authz) checkExternalKeys(authz, issues);
  const defaults = record(authz?.limits);
  checkDeadline(defaults, undefined, ['authz', 'limits'], issues);
  const routes = Array.isArray(root.routes) ? root.routes : [];
  routes.forEach((route, index) => checkDeadline(record(record(route)?.limits), defaults, ['routes', index, 'limits'], issues));
  return issues;
}
