// Properties of the one `{param}` template compiler against its spec: what each kind of capture may match,
// anchored at both ends, literal text matched only by itself (no regex from a template's text), fill round trip.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileTemplate, fillTemplate, matchTemplate, missingParam, templateNames, type CaptureKind } from '../../src/routing/template.ts';

const numRuns = 2000;

/** What a capture of each kind may hold, per the spec in template.ts. */
const ALPHABET: Record<CaptureKind, RegExp> = {
  segment: /^[^\n\r\u2028\u2029]+$/,
  hostLabel: /^[a-z0-9-]+$/,
  paramValue: /^[A-Za-z0-9_][A-Za-z0-9._@+-]{0,127}$/,
};
const kinds = fc.constantFrom<CaptureKind>('segment', 'hostLabel', 'paramValue');

/** Literal text made mostly of characters a regular expression would read as syntax. */
const SPECIAL = ['.', '(', ')', '[', ']', '*', '+', '?', '^', '$', '|', '\\', '{', '}'];
const literal = fc.string({ unit: fc.constantFrom(...SPECIAL, '-', '~', '/'), minLength: 1, maxLength: 4 });
/** A template: literal text and distinct captures `{p1}`, `{p2}`, never two captures side by side. */
const template = fc
  .tuple(fc.option(literal, { nil: '' }), fc.array(literal, { minLength: 0, maxLength: 3 }), fc.option(literal, { nil: '' }))
  .map(([head, separators, tail]) => head + separators.map((s, i) => `{p${i + 1}}${s}`).join('') + (separators.length > 0 ? `{p${separators.length + 1}}` : '') + tail);
/** Values every kind admits and that hold no special character: each kind must match the template filled with them. */
const plainValue = fc.string({ unit: fc.constantFrom('a', 'b', 'z', '0', '9'), minLength: 1, maxLength: 8 });
const fillsFor = (t: string) => fc.tuple(...templateNames(t).map(() => plainValue)).map((values) => Object.fromEntries(templateNames(t).map((n, i) => [n, values[i] as string])));
/** Anything a client could send where a value is matched (also put around a filled template, to test the anchors). */
const anyValue = fc.string({ unit: fc.oneof(fc.constantFrom(...SPECIAL, 'a', 'A', '0', '-', '.', '_', '@', '+', '/', '\n', '%', ' '), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 })), maxLength: 20 });

describe('template compiler', () => {
  it('a match captures only its kind\'s alphabet, and filling the captures back gives the whole value (anchored)', () => {
    fc.assert(
      fc.property(template.chain((t) => fc.tuple(fc.constant(t), fc.oneof(anyValue, fc.tuple(anyValue, fillsFor(t), anyValue).map(([before, params, after]) => before + fillTemplate(t, params) + after)))), kinds, ([t, value], kind) => {
        const found = matchTemplate(compileTemplate(t, kind), value);
        if (found === undefined) return;
        for (const captured of Object.values(found)) expect(captured).toMatch(ALPHABET[kind]);
        expect(fillTemplate(t, found)).toBe(value);
      }),
      { numRuns },
    );
  });

  it('the template filled with values of its alphabet matches, and gives them back when the literals keep them apart', () => {
    fc.assert(
      fc.property(template.chain((t) => fc.tuple(fc.constant(t), fillsFor(t))), kinds, ([t, params], kind) => {
        const value = fillTemplate(t, params);
        const found = matchTemplate(compileTemplate(t, kind), value);
        expect(found).toEqual(params);
        expect(missingParam(compileTemplate(t, kind), params)).toBeUndefined();
      }),
      { numRuns },
    );
  });

  it('each literal character is matched only by itself: no regex syntax from the template text', () => {
    fc.assert(
      fc.property(template.chain((t) => fc.tuple(fc.constant(t), fillsFor(t), fc.nat())), kinds, ([t, params, pick], kind) => {
        const value = fillTemplate(t, params);
        // Values hold no special character, so every special character of the value is template text.
        const specials = [...value].flatMap((c, i) => (SPECIAL.includes(c) ? [i] : []));
        if (specials.length === 0) return;
        const at = specials[pick % specials.length] as number;
        for (const other of ['a', '0', 'x', '.']) {
          if (other === value[at]) continue;
          const changed = value.slice(0, at) + other + value.slice(at + 1);
          const c = value[at] as string;
          // One fewer of that character than the template's own text needs: no reading of it can match.
          if ([...changed].filter((x) => x === c).length < [...t.replace(/\{p\d+\}/g, '')].filter((x) => x === c).length) {
            expect(matchTemplate(compileTemplate(t, kind), changed)).toBeUndefined();
          }
        }
      }),
      { numRuns },
    );
  });

  it('examples: literal dots, parentheses and dollars; lazy split; host labels; a name captured twice', () => {
    expect(matchTemplate(compileTemplate('api.v1', 'segment'), 'apixv1')).toBeUndefined();
    expect(matchTemplate(compileTemplate('api.v1', 'segment'), 'api.v1')).toEqual({});
    expect(matchTemplate(compileTemplate('{x}.v1', 'segment'), 'axv1')).toBeUndefined();
    expect(matchTemplate(compileTemplate('(a)+{x}', 'segment'), 'aa1')).toBeUndefined();
    expect(matchTemplate(compileTemplate('(a)+{x}', 'segment'), '(a)+1')).toEqual({ x: '1' });
    expect(matchTemplate(compileTemplate('{x}$', 'segment'), 'a$')).toEqual({ x: 'a' });
    expect(matchTemplate(compileTemplate('{x}.sock', 'paramValue'), 'a.sock.sock')).toEqual({ x: 'a.sock' });
    expect(matchTemplate(compileTemplate('{x}.sock', 'paramValue'), '.a.sock')).toBeUndefined();
    expect(matchTemplate(compileTemplate('{s}--{u}.apps.example.org', 'hostLabel'), 'a--b--c.apps.example.org')).toEqual({ s: 'a', u: 'b--c' });
    expect(matchTemplate(compileTemplate('{s}.example.org', 'hostLabel'), 'a.b.example.org')).toBeUndefined();
    expect(matchTemplate(compileTemplate('/run/{u}/{u}.sock', 'paramValue'), '/run/alice/alice.sock')).toEqual({ u: 'alice' });
    expect(matchTemplate(compileTemplate('/run/{u}/{u}.sock', 'paramValue'), '/run/alice/bob.sock')).toBeUndefined();
    expect(fillTemplate('unix:/run/{user}/{service}.sock', { user: 'alice' })).toBe('unix:/run/alice/{service}.sock');
    expect(missingParam(compileTemplate('unix:/run/{user}/{service}.sock', 'paramValue'), { user: 'alice' })).toBe('service');
    // Text that is not a well-formed capture is literal.
    expect(matchTemplate(compileTemplate('{}{A}{a.b}', 'segment'), '{}{A}{a.b}')).toEqual({});
  });
});
