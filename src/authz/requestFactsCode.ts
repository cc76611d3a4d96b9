// Turns RequestFacts into the authorizer facts of the README as parameterized Datalog: every value
// travels as a bound parameter, so nothing a client sends (path, host, certificate fields) can inject code.
import type { RequestFacts } from './types.ts';

export interface FactsCode {
  /** Datalog with `{pN}` placeholders only. */
  source: string;
  /** Placeholder values in the shape addCodeWithParameters expects (strings, `{ date }`). */
  parameters: Record<string, string | { date: string }>;
}

/**
 * Builds the facts. Throws only when `facts.time` is not a valid date: biscuit-wasm would panic on it,
 * and the caller turns the throw into "cannot decide".
 */
export function requestFactsCode(facts: RequestFacts): FactsCode {
  if (!(facts.time instanceof Date) || !Number.isFinite(facts.time.getTime())) {
    throw new Error('request time is not a valid date');
  }
  const lines: string[] = [];
  const parameters: Record<string, string | { date: string }> = {};
  let n = 0;
  const slot = (value: string | { date: string }): string => {
    const name = `p${n++}`;
    parameters[name] = value;
    return `{${name}}`;
  };
  const add = (predicate: string, ...values: (string | undefined)[]): void => {
    if (values.some((v) => typeof v !== 'string')) return;
    lines.push(`${predicate}(${values.map((v) => slot(v as string)).join(', ')});`);
  };

  lines.push(`time(${slot({ date: facts.time.toISOString() })});`);
  add('route', facts.route);
  add('protocol', facts.protocol);
  add('method', facts.method);
  add('host', facts.host);
  add('path', facts.path);
  for (const [name, value] of Object.entries(facts.params)) add('param', name, value);
  add('source_ip', facts.sourceIp);
  const client = facts.client;
  if (client.cn !== '') add('client_cn', client.cn);
  add('client_subject', client.subject);
  for (const san of client.sans) add('client_san', san.kind, san.value);
  add('client_serial', client.serial);
  add('client_fingerprint', client.fingerprint);
  add('client_issuer', client.issuer);
  return { source: lines.join('\n'), parameters };
}
