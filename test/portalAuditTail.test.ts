// The portal's view of the audit log: it reads only what was appended, stays bounded, waits for a
// line to be whole, and continues on a rotated file after the records it kept.
import { appendFileSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { auditTail } from '../src/portal/auditTail.ts';

const line = (n: number, pad = '') => JSON.stringify({ event: 'request', req: `r.${n}`, reason: pad }) + '\n';
const reqs = async (file: string) => (await auditTail(file)).records.map((r) => r.req);

describe('portal audit tail', () => {
  it('returns appended records, and a line only once it is whole', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gatehouse-tail-')), 'audit.log');
    writeFileSync(file, line(1) + line(2));
    expect(await reqs(file)).toEqual(['r.1', 'r.2']);
    appendFileSync(file, line(3) + line(4).slice(0, 10));
    expect(await reqs(file)).toEqual(['r.1', 'r.2', 'r.3']);
    appendFileSync(file, line(4).slice(10) + 'not json\n');
    expect(await reqs(file)).toEqual(['r.1', 'r.2', 'r.3', 'r.4']);
  });

  it('continues on a rotated file after the records it kept from the old one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tail-'));
    const file = join(dir, 'audit.log');
    writeFileSync(file, line(1) + line(2) + line(3));
    expect(await reqs(file)).toHaveLength(3);
    renameSync(file, `${file}.1`);
    writeFileSync(file, line(9));
    expect(await reqs(file)).toEqual(['r.1', 'r.2', 'r.3', 'r.9']);
  });

  it('keeps about the last MiB, dropping the oldest records', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gatehouse-tail-')), 'audit.log');
    const pad = 'x'.repeat(1000);
    writeFileSync(file, Array.from({ length: 800 }, (_, i) => line(i, pad)).join(''));
    const first = await reqs(file);
    appendFileSync(file, Array.from({ length: 800 }, (_, i) => line(800 + i, pad)).join(''));
    const second = await reqs(file);
    expect(first.at(-1)).toBe('r.799');
    expect(second.at(-1)).toBe('r.1599');
    expect(second.length).toBeLessThan(1100);
    expect(second.length).toBeGreaterThan(1000);
    expect(second).not.toContain('r.0');
  });
});
