// The request path keeps its run order: no import goes from a later stage back up to an earlier one
// (build/layerOrder.ts), and the checker itself tells a call back up from a type handed down.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../build/docsReference.ts';
import { backArrows } from '../build/layerOrder.ts';

/** Imports from a later stage back up that remain today; lower it when one goes, never raise it. */
const remainingBackArrows = 0;

describe('layer order', () => {
  it(`has at most ${remainingBackArrows} imports back up the layers and every directory of src/ in a layer`, () => {
    const { arrows, unplaced } = backArrows(join(repoRoot, 'src'));
    expect(unplaced, 'give each new directory its layer in build/layerOrder.ts').toEqual([]);
    const listed = arrows.map((a) => `${a.file}:${a.line} ${a.from} -> ${a.to}`);
    expect(arrows.length, `imports back up (node build/layerOrder.ts):\n${listed.join('\n')}`).toBeLessThanOrEqual(remainingBackArrows);
  });

  it('counts a call back up and a leaf using a layer, not a type the exchange layer hands down', () => {
    const src = mkdtempSync(join(tmpdir(), 'gatehouse-layers-'));
    const write = (path: string, text: string): void => {
      mkdirSync(dirname(join(src, path)), { recursive: true });
      writeFileSync(join(src, path), text);
    };
    try {
      write('listener/accept.ts', "import { carry } from '../forward/carry.ts';\nexport const accept = carry;\n");
      write('forward/carry.ts', "import type { Exchange } from '../exchange/exchange.ts';\nimport { accept } from '../listener/accept.ts';\nexport const carry = (e: Exchange) => accept;\n");
      write('forward/named.ts', "import type { Socket } from '../listener/socket.ts';\nexport type Named = Socket;\n");
      write('exchange/exchange.ts', 'export interface Exchange { id: string }\n');
      write('config/settings.ts', "import type { Exchange } from '../exchange/exchange.ts';\nexport type Settings = Exchange;\n");
      write('elsewhere/thing.ts', "export const thing = 1;\n");
      const { arrows, unplaced } = backArrows(src);
      expect(arrows.map((a) => `${a.from}->${a.to}:${a.line}`).sort()).toEqual(['config->exchange:1', 'forward->listener:1', 'forward->listener:2']);
      expect(unplaced).toEqual(['elsewhere']);
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });
});
