// A portal view's cost must not grow with what users control: after hundreds of MiB of audit growth (valid-looking
// records around a sparse stretch) it shows the latest activity from a bounded tail with flat memory; a socket directory of thousands of files is read in part.
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { treeRssMiB } from '../../bench/support/procStats.ts';
import { auditTail, TAIL_WINDOW_BYTES } from '../../src/portal/auditTail.ts';
import { MAX_DIRECTORY_ENTRIES, servicesOf } from '../../src/portal/portalSections.ts';
import { startHostileGateway, type HostileGateway, type UserName } from './support/hostileGateway.ts';
import { http } from './support/httpCase.ts';

const MIB = 1 << 20;
/** Past the 512 MiB a string can hold: a reader that converts all growth at once cannot even do that. */
const SPARSE_MIB = 560;
const FILLER_MIB = 24;
/** Anyone may visit a user's service here: the portal shows its owner who did. */
const visitRoute = `  - name: visit
    path: /visit/{user}/{service}/
    upstream: unix:run/users/{user}/{service}.sock
    policy: |
      allow if user($u);
`;

/** Lines like the gateway's own: someone else's denied requests with long paths. */
function fillerChunk(): string {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < MIB; i++) {
    const line = JSON.stringify({ seq: i, prev: 'f'.repeat(64), time: new Date().toISOString(), event: 'request', conn: 'c9', req: `c9.${i}`, source: '127.0.0.9:9', token: { user: 'mallory' }, route: 'web', path: `/web/${'m'.repeat(1800)}`, decision: 'deny', status: 403, reason: 'filler' });
    lines.push(line);
    size += line.length + 1;
  }
  return lines.join('\n') + '\n';
}

/** Grows the audit file: filler lines, a sparse stretch (no disk used) ended by a newline, filler again. */
function growAuditFile(file: string): number {
  const before = statSync(file).size;
  const chunk = fillerChunk();
  for (let i = 0; i < FILLER_MIB / 2; i++) appendFileSync(file, chunk);
  truncateSync(file, statSync(file).size + SPARSE_MIB * MIB);
  appendFileSync(file, '\n');
  for (let i = 0; i < FILLER_MIB / 2; i++) appendFileSync(file, chunk);
  return statSync(file).size - before;
}

async function signIn(g: HostileGateway, user: UserName): Promise<string> {
  const body = `token=${encodeURIComponent(g.tokens[user])}`;
  const res = await g.send(http('POST /.well-known/gatehouse/session HTTP/1.1', ['Host: localhost', 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${body.length}`, 'Connection: close'], body), { as: user, expectResponses: 1 });
  expect(res.finals[0]?.status).toBe(303);
  const cookie = /^([^;]+)/.exec(res.finals[0]?.header('set-cookie') ?? '')?.[1];
  if (!cookie) throw new Error('no session cookie');
  return cookie;
}

async function get(g: HostileGateway, user: UserName, path: string, headers: string[] = [g.auth(user).trim()]): Promise<{ status: number; text: string }> {
  const res = await g.send(http(`GET ${path} HTTP/1.1`, ['Host: localhost', ...headers, 'Connection: close']), { as: user, expectResponses: 1, timeoutMs: 20_000 });
  return { status: res.finals[0]?.status ?? 0, text: res.finals[0]?.text ?? '' };
}

const section = (page: string, id: string) => new RegExp(`id="${id}">([\\s\\S]*?)</(ul|table|p)>`).exec(page)?.[1] ?? '';

/** Waits until alice's portal shows `path` in her activity (records are written asynchronously). */
async function portalShowing(g: HostileGateway, cookie: string, path: string): Promise<string> {
  const until = Date.now() + 8000;
  for (;;) {
    const page = await get(g, 'alice', '/.well-known/gatehouse/', [`Cookie: ${cookie}`]);
    expect(page.status).toBe(200);
    if (section(page.text, 'activity').includes(path) || Date.now() > until) return page.text;
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const processes of [1, 2]) {
  describe(`the portal after ${SPARSE_MIB + FILLER_MIB} MiB of audit growth (--processes ${processes})`, () => {
    let g: HostileGateway;
    beforeAll(async () => {
      g = await startHostileGateway({ extraRoutes: visitRoute, serveArgs: ['--processes', String(processes)] });
    });
    afterAll(async () => {
      await g?.stop();
      // The sparse stretch takes no disk, the filler does: leave none of it behind.
      if (g) truncateSync(g.h.auditFile, 0);
    });

    it('shows the latest activity and who used the service, reading a bounded tail, with flat memory', async () => {
      const cookie = await signIn(g, 'alice');
      expect((await get(g, 'alice', '/web/before-growth')).status).toBe(200);
      expect(section(await portalShowing(g, cookie, '/web/before-growth'), 'activity')).toContain('/web/before-growth');
      const rssBefore = treeRssMiB(g.h.proc.pid as number);

      expect(growAuditFile(g.h.auditFile)).toBeGreaterThan(SPARSE_MIB * MIB);
      expect((await get(g, 'alice', '/web/after-growth')).status).toBe(200);
      expect((await get(g, 'bob', '/visit/alice/app/after-growth')).status).toBe(200);
      const page = await portalShowing(g, cookie, '/web/after-growth');
      expect(section(page, 'activity')).toContain('/web/after-growth');
      const usedBy = section(page, 'used-by');
      expect(usedBy).toContain('<td>bob</td>');
      expect(usedBy).toContain('/visit/alice/app/after-growth');
      await get(g, 'alice', '/.well-known/gatehouse/', [`Cookie: ${cookie}`]);
      expect(treeRssMiB(g.h.proc.pid as number) - rssBefore, 'gateway memory grew with the audit log').toBeLessThan(150);
    }, 90_000);
  });
}

describe('the tail reader', () => {
  it('reads at most its window after any growth, then only what came since', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'gatehouse-growth-')), 'audit.log');
    const line = (path: string) => `${JSON.stringify({ event: 'request', token: { user: 'alice' }, path })}\n`;
    writeFileSync(file, line('/web/before-growth'));
    expect((await auditTail(file)).records.map((r) => r.path)).toEqual(['/web/before-growth']);
    try {
      growAuditFile(file);
      appendFileSync(file, line('/web/after-growth'));
      const view = await auditTail(file);
      expect(view.bytesRead).toBeLessThanOrEqual(TAIL_WINDOW_BYTES);
      expect(view.records.at(-1)?.path).toBe('/web/after-growth');
      expect(view.records.filter((r) => r.token?.user === 'mallory').length).toBeGreaterThan(100);
      appendFileSync(file, line('/web/later'));
      const again = await auditTail(file);
      expect(again.bytesRead).toBe(Buffer.byteLength(line('/web/later')));
      expect(again.records.slice(-2).map((r) => r.path)).toEqual(['/web/after-growth', '/web/later']);
    } finally {
      rmSync(file);
    }
  });
});

describe('the services found in a user\'s socket directory', () => {
  it('looks at a bounded number of entries however many files the user made', async () => {
    const root = mkdtempSync(join(tmpdir(), 'gatehouse-sockets-'));
    try {
      mkdirSync(join(root, 'alice'));
      for (let i = 0; i < MAX_DIRECTORY_ENTRIES * 4; i++) writeFileSync(join(root, 'alice', `s${i}.sock`), '');
      const found = await servicesOf(`unix:${root}/{user}/{service}.sock`, 'alice', []);
      expect(found.length).toBeGreaterThan(0);
      expect(found.length).toBeLessThanOrEqual(MAX_DIRECTORY_ENTRIES);
      expect(await servicesOf(`unix:${root}/{user}/{service}.sock`, 'nobody', [])).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
