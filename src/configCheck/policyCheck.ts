// Compiles a route's Datalog policy with the Biscuit library, the way the gateway will,
// and reports parse errors, `{placeholders}` and policies that could never allow anything.
// `{name}` is allowed only as `trusting {name}` for a key declared in authz.externalKeys.
import { AuthorizerBuilder, KeyPair, SignatureAlgorithm } from '@biscuit-auth/biscuit-wasm';
import { biscuitErrorText } from '../token/biscuitErrors.ts';

export interface PolicyProblem {
  message: string;
  /** 0-based line inside the policy text, when known. */
  line?: number;
}

interface ParseErrorShape {
  Language?: {
    ParseError?: { errors?: { input?: string; message?: string }[] };
    Parameters?: { missing_parameters?: string[]; unused_parameters?: string[] };
  };
}

// `policy` with its Datalog comments (line and block) blanked out, offsets kept, strings left alone.
function withoutComments(policy: string): string {
  return policy.replace(/"(?:[^"\\]|\\.)*"|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (m) => (m.startsWith('"') ? m : m.replace(/[^\n]/g, ' ')));
}

function lineOf(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length - 1;
}

/** A real public key in Datalog parameter form, standing in for each declared external key while compiling. */
let standIn: string | undefined;
function standInKey(): string {
  if (standIn === undefined) {
    const pair = new KeyPair(SignatureAlgorithm.Ed25519);
    const key = pair.getPublicKey();
    standIn = key.toDatalogParameter();
    key.free();
    pair.free();
  }
  return standIn;
}

function describe(policy: string, thrown: unknown, externalKeys: readonly string[]): PolicyProblem[] {
  const error = thrown as ParseErrorShape;
  const parse = error?.Language?.ParseError?.errors;
  if (parse && parse.length > 0) {
    // After a real error the parser often adds one for the end of input; keep the real ones.
    const located = parse.filter((e) => e.input !== '' || e.message);
    return (located.length > 0 ? located : parse.slice(0, 1)).map(({ input = '', message }) => {
      const found = input === '' ? -1 : policy.indexOf(input);
      const offset = found === -1 ? policy.trimEnd().length : found;
      const near = input === '' ? 'at the end (missing ";" or ")"?)' : `near "${input.split('\n')[0]?.slice(0, 60)}"`;
      const hint = input.startsWith('#') ? ': Datalog comments start with "//" ("#" lines in a policy block are policy text)' : '';
      return { message: `policy does not parse ${near}${message ? `: ${message}` : hint}`, line: lineOf(policy, offset) };
    });
  }
  const missing = error?.Language?.Parameters?.missing_parameters;
  if (missing && missing.length > 0) {
    return missing.map((name) => {
      const at = policy.indexOf(`{${name}}`);
      const line = at === -1 ? undefined : lineOf(policy, at);
      const message = externalKeys.includes(name)
        ? `{${name}} is an external key: it may only follow "trusting" (e.g. "allow if ... trusting authority, {${name}};")`
        : `policy uses {${name}}, which is not filled in: declare it in authz.externalKeys to trust blocks signed by that key ("trusting {${name}}"); match path captures with param("name", $var)`;
      return line === undefined ? { message } : { message, line };
    });
  }
  return [{ message: `policy does not compile: ${biscuitErrorText(thrown)}` }];
}

/** Problems with one route policy; `captured` are the route's path parameters, `externalKeys` the declared key names. */
export function checkPolicy(policy: string, captured: readonly string[], externalKeys: readonly string[] = []): PolicyProblem[] {
  const builder = new AuthorizerBuilder();
  let compiled: string;
  try {
    builder.addCodeWithParameters(policy, {}, Object.fromEntries(externalKeys.map((name) => [name, standInKey()])));
    compiled = builder.toString();
  } catch (thrown) {
    return describe(policy, thrown, externalKeys);
  } finally {
    builder.free();
  }
  const problems: PolicyProblem[] = [];
  // Delegable tokens accept a client named by delegated_* facts from a block signed by their delegation
  // key, and facts of the route policy are trusted everywhere: a policy must never state them.
  for (const match of withoutComments(policy).matchAll(/(?:^|;)\s*(delegated_(?:fingerprint|cn))\s*\(/g)) {
    problems.push({ message: `policy must not define ${match[1]} facts or rules: delegable tokens would accept any certificate they name`, line: lineOf(policy, match.index + match[0].indexOf('delegated_')) });
  }
  if (!/^allow if /m.test(compiled)) {
    problems.push({ message: 'policy has no "allow if" rule: every request would be denied' });
  }
  for (const match of withoutComments(policy).matchAll(/\bparam\(\s*"([^"]*)"/g)) {
    const name = match[1] ?? '';
    if (!captured.includes(name)) {
      const have = captured.length > 0 ? `the path captures only ${captured.map((c) => `{${c}}`).join(', ')}` : 'the path captures no parameters';
      problems.push({ message: `policy tests param("${name}", ...) but ${have}; it can never match`, line: lineOf(policy, match.index) });
    }
  }
  return problems;
}
