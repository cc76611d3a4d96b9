// The publish decision's extra stage: the token's right to publish (every block must grant it, see
// token/publishRight.ts) and the delegation-chain facts the `publish.policy` sees (`token_blocks`, `publish_granted`).
import { Fact, type AuthorizerBuilder, type Biscuit } from '@biscuit-auth/biscuit-wasm';
import { publishRightFor, type PublishRight } from '../../token/publishRight.ts';
import type { GatewayPredicate } from './factVocabulary.ts';

// Predicates of the contract (factVocabulary.ts).
const BLOCKS: GatewayPredicate = 'token_blocks';
const GRANTED: GatewayPredicate = 'publish_granted';

/** Built on first use in each thread (each owns its biscuit-wasm instance), then reused: parsing costs WebAssembly memory. */
let templates: { blocks: Fact; granted: Fact } | undefined;

/** Whether `token` may publish `service`: reads the printed block sources (publishing is rare: once per registration and recheck). */
export function publishRightOf(token: Biscuit, service: string | undefined): PublishRight {
  const sources: string[] = [];
  for (let i = 0; i < token.countBlocks(); i++) sources.push(token.getBlockSource(i));
  // No service named: refused (the endpoint always names one; fail closed anyway).
  return publishRightFor(sources, service ?? '');
}

/**
 * `token_blocks(n)` (1 = the token as minted, more = attenuated or lent) and `publish_granted(block, service)`
 * for each grant, stated by the gateway, so a site can refuse delegated publishing: `deny if token_blocks($n), $n > 1;`.
 */
export function addPublishChainFacts(builder: AuthorizerBuilder, right: Extract<PublishRight, { ok: true }>): void {
  const t = (templates ??= { blocks: Fact.fromString(`${BLOCKS}({n})`), granted: Fact.fromString(`${GRANTED}({block}, {service})`) });
  t.blocks.set('n', right.chain.blocks);
  builder.addFact(t.blocks);
  for (const [block, grants] of right.chain.grants.entries()) {
    for (const service of grants) {
      t.granted.set('block', block);
      t.granted.set('service', service);
      builder.addFact(t.granted);
    }
  }
}
