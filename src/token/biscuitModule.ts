// biscuit-wasm for the token tooling (bin/gatehouse.js loads it first, quietly), plus the helpers
// every token module shares: run limits, error text, Datalog parameters.
import * as biscuitWasm from '@biscuit-auth/biscuit-wasm';

export const biscuit = biscuitWasm;

/** Run limits for authorizations and queries done by the tooling (generous, never the default). */
export const toolLimits = { max_facts: 10_000, max_iterations: 1_000, max_time_micro: 1_000_000 };

/** biscuit-wasm's thrown objects in the product's words: the gateway's wording, shared. */
export { biscuitErrorText } from './biscuitErrors.ts';

/**
 * Parameters for addCodeWithParameters, converted the way biscuit-wasm expects (dates, sets).
 * Passing raw values such as a Date makes the library panic, so every value goes through here.
 */
export function datalogParameters(values: Record<string, string | Date | Set<string>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values)) out[name] = biscuit.prepareTerm(value);
  return out;
}
