// Properties of path normalization and route matching over generated targets: the canonical path is
// a fixed point, its segments are plain names, and no encoding trick walks a request out of its route.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../../src/config/schema.ts';
import { encodePath, normalizeTarget } from '../../src/routing/normalizePath.ts';
import { RouteTable } from '../../src/routing/routeTable.ts';

const numRuns = 1000;
const runLimits = { maxFacts: 1000, maxIterations: 100, maxTimeMicros: 10_000 };

/** Unicode general category Cc (C0 controls, DEL, C1 controls) and the line and paragraph separators. */
const CONTROL = /[\p{Cc}\u2028\u2029]/u;

/** Pieces an attacker combines: separators, dots, their percent-encodings and overlong forms, delimiters. */
const hostilePiece = fc.constantFrom('%', '.', '/', '\\', '2e', '2f', '5c', '00', 'c0', 'ae', '%2e', '%2f', '%5c', '%00', '%c0%ae', ';', '?', '#', 'a', 'b', 'x', 'Z');
const hostile = fc.array(hostilePiece, { maxLength: 24 }).map((pieces) => pieces.join(''));

/** Any byte percent-encoded, so decoding reaches every UTF-8 sequence (valid or not) and every control. */
const escapedByte = fc.integer({ min: 0, max: 255 }).map((b) => '%' + b.toString(16).padStart(2, '0'));
/** A code point percent-encoded as UTF-8, the way a client would send a non-ASCII or control character. */
const escapedCodePoint = fc.oneof(fc.integer({ min: 0, max: 0x2fff }), fc.integer({ min: 0xe000, max: 0x10ffff })).map((c) => encodeURIComponent(String.fromCodePoint(c)));
/** Control characters percent-encoded as UTF-8: C0, DEL, C1 (`%C2%85` is NEL), U+2028 and U+2029. */
const escapedControl = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.constantFrom(0x7f, 0x2028, 0x2029), fc.integer({ min: 0x80, max: 0x9f })).map((c) => encodeURIComponent(String.fromCodePoint(c)));
const targetPiece = fc.oneof(hostilePiece, escapedByte, escapedCodePoint, escapedControl, fc.string({ unit: 'binary', maxLength: 3 }), fc.constantFrom('..', '/../', '/./', '//'));
const anyTarget = fc.array(targetPiece, { maxLength: 30 }).map((pieces) => '/' + pieces.join(''));

/** A segment as normalization may produce it: any code points, minus separators and controls, minus dot names. */
const plainSegment = fc
  .string({ unit: 'binary', minLength: 1, maxLength: 12 })
  .filter((s) => !/[/\\]/.test(s) && !CONTROL.test(s) && s !== '.' && s !== '..');

function routeConfig(name: string, path: string, stripPrefix: boolean): RouteConfig {
  return { name, path, protocols: ['http'], upstream: `unix:/run/${name}.sock`, stripPrefix, forwardToken: false, policy: 'allow if true;' };
}

describe('normalizeTarget (properties)', () => {
  it('yields segments that are plain names: never empty, `.` or `..`, never a separator, NUL, control character or line separator', () => {
    fc.assert(
      fc.property(anyTarget, (target) => {
        const n = normalizeTarget(target);
        if (!n.ok) return;
        for (const segment of n.segments) {
          expect(segment).not.toBe('');
          expect(segment).not.toBe('.');
          expect(segment).not.toBe('..');
          expect(segment).not.toMatch(/[/\\]/);
          expect(segment, `segment ${JSON.stringify(segment)} of ${JSON.stringify(target)}`).not.toMatch(CONTROL);
        }
        expect(n.path.startsWith('/')).toBe(true);
      }),
      { numRuns },
    );
  });

  it('is idempotent: normalizing the re-encoded normalized path gives the same segments and path', () => {
    fc.assert(
      fc.property(anyTarget, (target) => {
        const first = normalizeTarget(target);
        if (!first.ok) return;
        const again = normalizeTarget(encodePath(first.segments, first.trailingSlash));
        expect(again.ok, `re-normalizing ${JSON.stringify(target)}`).toBe(true);
        if (!again.ok) return;
        expect(again.segments).toEqual(first.segments);
        expect(again.path).toBe(first.path);
        expect(again.trailingSlash).toBe(first.trailingSlash);
      }),
      { numRuns },
    );
  });

  it('encodePath round-trips any list of plain segments, and its output is visible ASCII', () => {
    fc.assert(
      fc.property(fc.array(plainSegment, { maxLength: 8 }), fc.boolean(), (segments, trailingSlash) => {
        const encoded = encodePath(segments, trailingSlash);
        expect(encoded).toMatch(/^\/[\x21-\x7e]*$/);
        expect(encoded).not.toMatch(/[?#\\]/);
        const n = normalizeTarget(encoded);
        expect(n.ok).toBe(true);
        if (n.ok) expect(n.segments).toEqual(segments);
      }),
      { numRuns },
    );
  });
});

describe('route matching on hostile targets (properties)', () => {
  const table = new RouteTable(
    [routeConfig('files', '/files/{user}/', true), routeConfig('api', '/api/v1/', false)],
    runLimits,
  );
  const prefixes = ['/files/alice/', '/api/v1/', '/files/', '/api/'];

  it('refuses, or routes to a route whose prefix the normalized path is under and hands the upstream only the rest', () => {
    let routed = 0;
    fc.assert(
      fc.property(fc.constantFrom(...prefixes), hostile, (prefix, tail) => {
        const target = prefix + tail;
        const n = normalizeTarget(target);
        if (!n.ok) return;
        const match = table.match('gateway.test', n.segments, 'http');
        if (!match.ok) {
          expect([400, 404]).toContain(match.status);
          return;
        }
        routed++;
        // The route's template with its captures filled in is a prefix of what was authorized.
        const filled = match.route.config.path.replace(/\{([a-z][a-z0-9_]*)\}/g, (_, name: string) => match.params[name] ?? '\0');
        const prefixSegments = filled.split('/').filter((s) => s !== '');
        expect(n.segments.slice(0, prefixSegments.length)).toEqual(prefixSegments);
        expect(match.rest).toEqual(n.segments.slice(prefixSegments.length));
        for (const value of Object.values(match.params)) expect(value).toMatch(/^[A-Za-z0-9_][A-Za-z0-9._@+-]*$/);

        // What the upstream is sent, decoded the way a plain server would (once, whole path), names the
        // same segments: no `..` to resolve, no separator that appears only after decoding.
        const kept = match.route.config.stripPrefix ? match.rest : n.segments;
        const upstreamPath = encodePath(kept, n.trailingSlash || kept.length === 0);
        const decoded = decodeURIComponent(upstreamPath);
        const upstreamSegments = decoded.split('/').filter((s) => s !== '');
        expect(upstreamSegments).toEqual(kept);
        expect(upstreamSegments).not.toContain('..');
        expect(upstreamSegments).not.toContain('.');
        expect(decoded).not.toMatch(/[\\\0]/);
        // Without prefix stripping, the upstream reads exactly the path that was authorized.
        if (!match.route.config.stripPrefix) expect(decoded).toBe(n.path);
      }),
      { numRuns },
    );
    // The property is only worth something if hostile targets do get routed.
    expect(routed).toBeGreaterThan(numRuns / 10);
  });
});
