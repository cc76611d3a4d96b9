// The shares of per-identity limits held by several instances: computed from the demand each reported,
// reports cut below NOTIFY's size, hostile or broken reports dropped, a silent instance forgotten.
import { describe, expect, it } from 'vitest';
import { createSharedLimits, LIMITS_CHANNEL } from '../src/cluster/limitShares.ts';

const demand = (requests: Record<string, number>, tunnels: Record<string, number> = {}) => ({ requests: new Map(Object.entries(requests)), tunnels: new Map(Object.entries(tunnels)) });

function cluster(names: string[]) {
  let clock = 0;
  const now = () => clock;
  const database = { fresh: true };
  const nodes = new Map(names.map((name) => [name, createSharedLimits(name, now, () => database.fresh)]));
  return {
    nodes,
    database,
    node: (name: string) => nodes.get(name) ?? expect.unreachable(name),
    advance: (ms: number) => (clock += ms),
    /** One reporting round: each instance reports `seen[name]`, every part reaches every instance (its own too, as NOTIFY does). */
    round(seen: Record<string, ReturnType<typeof demand>>) {
      const parts = names.flatMap((name) => nodes.get(name)?.local(seen[name] ?? demand({})) ?? []);
      for (const node of nodes.values()) for (const part of parts) node.reported(part);
    },
  };
}

describe('shared per-identity limits', () => {
  it('uses the channel the instances LISTEN on', () => expect(LIMITS_CHANNEL).toBe('gatehouse_limits'));

  it('an identity seen by one instance only gets the whole limit there, once the reports say so', () => {
    const c = cluster(['a', 'b', 'c']);
    c.round({});
    // New everywhere: an equal part until the reports come in.
    expect(c.node('a').shareOf('alice')).toBeCloseTo(1 / 3);
    c.round({ a: demand({ alice: 50 }) });
    expect(c.node('a').shareOf('alice')).toBe(1);
    // b and c did not see her yet: their part is small until they do.
    expect(c.node('b').shareOf('alice')).toBeCloseTo(1 / 51);
  });

  it('splits by demand, and the shares add up to about one', () => {
    const c = cluster(['a', 'b', 'c']);
    c.round({ a: demand({ alice: 100 }), b: demand({ alice: 100 }), c: demand({ alice: 200 }) });
    const shares = ['a', 'b', 'c'].map((n) => c.node(n).shareOf('alice'));
    expect(shares[0]).toBeCloseTo(101 / 401);
    expect(shares[2]).toBeCloseTo(201 / 401);
    expect(shares.reduce((x, y) => x + y)).toBeLessThan(1.01);
  });

  it('counts the tunnels open elsewhere, and forgets an instance that stopped reporting', () => {
    const c = cluster(['a', 'b']);
    c.round({ a: demand({}, { alice: 3 }), b: demand({ alice: 10 }) });
    expect(c.node('b').tunnelsElsewhere('alice')).toBe(3);
    expect(c.node('b').shareOf('alice')).toBe(1);
    expect(c.node('a').shareOf('alice')).toBeCloseTo(1 / 11);
    // a dies: after three silent seconds its tunnels and demand no longer count.
    c.advance(3500);
    c.node('b').reported(c.node('b').local(demand({ alice: 10 }))[0]);
    expect(c.node('b').tunnelsElsewhere('alice')).toBe(0);
  });

  it('while this instance does not hear the database, it keeps the others\' last reports: an outage does not hand each the whole limit', () => {
    const c = cluster(['a', 'b', 'c']);
    c.round({ a: demand({ alice: 30 }, { alice: 1 }), b: demand({ alice: 30 }), c: demand({ alice: 30 }) });
    c.database.fresh = false;
    c.advance(60_000);
    expect(c.node('a').shareOf('alice')).toBeCloseTo(31 / 91);
    expect(c.node('a').shareOf('bob')).toBeCloseTo(1 / 3);
    expect(c.node('b').tunnelsElsewhere('alice')).toBe(1);
    // Back, and the others still silent: they are gone, and their part returns.
    c.database.fresh = true;
    expect(c.node('a').shareOf('alice')).toBe(1);
  });

  it('an identity that goes quiet is reported once at zero, so the others stop counting it at once', () => {
    const c = cluster(['a', 'b']);
    c.round({ a: demand({ alice: 40 }), b: demand({ alice: 40 }) });
    expect(c.node('b').shareOf('alice')).toBeCloseTo(41 / 81);
    c.round({ b: demand({ alice: 40 }) });
    expect(c.node('b').shareOf('alice')).toBe(1);
  });

  it('cuts a large report into parts under NOTIFY\'s 8000 bytes, and every part counts', () => {
    const c = cluster(['a', 'b']);
    const many = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`sha256:${i.toString(16).padStart(64, '0')}`, 5]));
    const parts = c.node('a').local(demand(many));
    expect(parts.length).toBeGreaterThan(10);
    for (const part of parts) expect(Buffer.byteLength(part)).toBeLessThan(8000);
    for (const part of parts) c.node('b').reported(part);
    expect(c.node('b').shareOf(`sha256:${(1999).toString(16).padStart(64, '0')}`)).toBeCloseTo(1 / 6);
  });

  it('drops what is not a report: any database user can NOTIFY on the channel', () => {
    const c = cluster(['a', 'b']);
    const b = c.node('b');
    for (const payload of [undefined, '', 'not json', '[]', '{"i":1,"d":[]}', '{"i":"x","d":{}}', '{"i":"x","d":[["alice",-5,0],["alice","many",0],[7,1,1],["' + 'x'.repeat(300) + '",1,1],["alice",1e309,0]]}']) b.reported(payload);
    expect(b.shareOf('alice')).toBeCloseTo(1 / 2); // new to b, one other live instance ("x" said it lives)
    expect(b.tunnelsElsewhere('alice')).toBe(0);
    // Its own reports (NOTIFY reaches the sender too) are not someone else's demand.
    b.reported(b.local(demand({ alice: 30 }))[0]);
    expect(b.shareOf('alice')).toBe(1);
  });
});
