// Which predicates a policy's Datalog reads and which it defines itself, found by a scan of its text
// (biscuit-wasm exposes no parsed rules): comments and string contents are blanked first, offsets kept.

export interface PredicateUse {
  name: string;
  /** Offset of the name in the policy text. */
  offset: number;
  /** The statement trusts a named key (`trusting {key}`, `trusting ed25519/…`): its facts may come from that signer's blocks. */
  fromSigner: boolean;
}

export interface PolicyPredicates {
  /** Heads of the policy's own rules and facts. */
  defined: Set<string>;
  /** Predicates read in rule, check and allow/deny bodies. */
  used: PredicateUse[];
}

/** Words that may stand before "(" without being a predicate: Datalog keywords and operators. */
const KEYWORDS = new Set(['if', 'or', 'and', 'all', 'any', 'trusting', 'check', 'allow', 'deny', 'reject', 'true', 'false', 'null']);
const POLICY_START = /^\s*(?:allow\s+if|deny\s+if|check\s+if|check\s+all|reject\s+if)\b/;
/** A name followed by "(", not a method (`.starts_with(`) nor a variable (`$x`). */
const PREDICATE = /(?<![.\w$])([A-Za-z_][A-Za-z0-9_:]*)\s*\(/g;

/** `policy` with comments and the insides of string literals blanked to spaces (line breaks and offsets kept). */
function blanked(policy: string): string {
  return policy.replace(/"(?:[^"\\]|\\.)*"|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (m) => (m.startsWith('"') ? `"${m.slice(1, -1).replace(/[^\n]/g, ' ')}"` : m.replace(/[^\n]/g, ' ')));
}

function predicatesIn(text: string, base: number): { name: string; offset: number }[] {
  return [...text.matchAll(PREDICATE)].filter((m) => !KEYWORDS.has(m[1] ?? '')).map((m) => ({ name: m[1] ?? '', offset: base + (m.index ?? 0) }));
}

export function policyPredicates(policy: string): PolicyPredicates {
  const text = blanked(policy);
  const defined = new Set<string>();
  const used: PredicateUse[] = [];
  let start = 0;
  for (const statement of text.split(';')) {
    const fromSigner = /\btrusting\b[^;]*(\{|ed25519\/|secp256r1\/)/.test(statement);
    const arrow = statement.indexOf('<-');
    if (POLICY_START.test(statement)) {
      for (const p of predicatesIn(statement, start)) used.push({ ...p, fromSigner });
    } else if (arrow !== -1) {
      const head = predicatesIn(statement.slice(0, arrow), start)[0];
      if (head) defined.add(head.name);
      for (const p of predicatesIn(statement.slice(arrow + 2), start + arrow + 2)) used.push({ ...p, fromSigner });
    } else {
      const fact = predicatesIn(statement, start)[0];
      if (fact) defined.add(fact.name);
    }
    start += statement.length + 1;
  }
  return { defined, used };
}
