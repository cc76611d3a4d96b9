// Adds RequestFacts to an authorizer as the facts of docs/reference/facts.md. Every value is bound into a prebuilt
// Fact template as a parameter, so nothing a client sends (path, host, certificate fields) can inject
// code; reusing the templates also avoids re-parsing Datalog, which costs time and WebAssembly memory.
import { Fact, type AuthorizerBuilder } from '@biscuit-auth/biscuit-wasm';
import type { GatewayPredicate } from './factVocabulary.ts';
import type { RequestFacts } from '../types.ts';

// Predicates of the contract (factVocabulary.ts): a name outside it does not compile.
const unary = ['route', 'protocol', 'method', 'host', 'path', 'source_ip', 'client_cn', 'client_subject', 'client_serial', 'client_fingerprint', 'client_issuer', 'service', 'publisher_fingerprint', 'signer'] as const satisfies readonly GatewayPredicate[];
type Unary = (typeof unary)[number];

interface Templates {
  time: Fact;
  unary: Record<Unary, Fact>;
  param: Fact;
  san: Fact;
}

/** Built on first use in each thread (each owns its biscuit-wasm instance), then reused. */
let templates: Templates | undefined;

function build(): Templates {
  return {
    time: Fact.fromString('time({value})'),
    unary: Object.fromEntries(unary.map((name) => [name, Fact.fromString(`${name}({value})`)])) as Record<Unary, Fact>,
    param: Fact.fromString('param({name}, {value})'),
    san: Fact.fromString('client_san({name}, {value})'),
  };
}

/** The facts as `predicate(values...)`, values still separate, in the order they are added. */
export function requestFactList(facts: RequestFacts): { predicate: GatewayPredicate; values: (string | Date)[] }[] {
  const list: { predicate: GatewayPredicate; values: (string | Date)[] }[] = [{ predicate: 'time', values: [facts.time] }];
  const client = facts.client;
  const values: Record<Unary, string | undefined> = {
    route: facts.route,
    protocol: facts.protocol,
    method: facts.method,
    host: facts.host,
    path: facts.path,
    source_ip: facts.sourceIp,
    client_cn: client.cn === '' ? undefined : client.cn,
    client_subject: client.subject,
    client_serial: client.serial,
    client_fingerprint: client.fingerprint,
    client_issuer: client.issuer,
    service: facts.service,
    publisher_fingerprint: facts.publisherFingerprint,
    signer: facts.signer,
  };
  for (const name of unary) {
    const value = values[name];
    if (typeof value === 'string') list.push({ predicate: name, values: [value] });
  }
  for (const [name, value] of Object.entries(facts.params)) {
    if (typeof name === 'string' && typeof value === 'string') list.push({ predicate: 'param', values: [name, value] });
  }
  for (const san of client.sans) {
    if (typeof san.kind === 'string' && typeof san.value === 'string') list.push({ predicate: 'client_san', values: [san.kind, san.value] });
  }
  return list;
}

/**
 * Adds the facts. Throws only when `facts.time` is not a valid date: biscuit-wasm would panic on it
 * (as it does on undefined values, which are never passed), and the caller turns the throw into "cannot decide".
 */
export function addRequestFacts(builder: AuthorizerBuilder, facts: RequestFacts): void {
  if (!(facts.time instanceof Date) || !Number.isFinite(facts.time.getTime())) {
    throw new Error('request time is not a valid date');
  }
  const t = (templates ??= build());
  for (const { predicate, values } of requestFactList(facts)) {
    if (predicate === 'time') {
      t.time.set('value', { date: facts.time.toISOString() });
      builder.addFact(t.time);
    } else if (predicate === 'param' || predicate === 'client_san') {
      const fact = predicate === 'param' ? t.param : t.san;
      fact.set('name', values[0] as string);
      fact.set('value', values[1] as string);
      builder.addFact(fact);
    } else {
      const fact = t.unary[predicate as Unary];
      fact.set('value', values[0] as string);
      builder.addFact(fact);
    }
  }
}
