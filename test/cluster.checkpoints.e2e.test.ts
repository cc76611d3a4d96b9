// Audit checkpoints recorded in the cluster database: each instance's durable checkpoints land there, the
// newest is an anchor `audit verify` checks the instance's files against, and a second log under the same
// origin (a fork, or a log started again under its old name) is said in the audit log.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordCheckpoint } from '../src/cluster/sharedCheckpoints.ts';
import { curl, inOneHour, makeRootKey, mintRaw, runGatehouse, startHarness, type Harness } from './support/gatewayHarness.ts';
import { postgresSkipReason, startMigratedPostgres, type TestPostgres } from './support/postgres.ts';
import { startEchoService } from '../src/demo/echoService.ts';
import type { Server } from 'node:http';

const routes = `  - name: demo
    path: /demo/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u);
`;

let db: TestPostgres;
const gateways: Harness[] = [];
const services: Server[] = [];
const rootKey = makeRootKey();
const token = mintRaw(rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function start(name: string, origin: string): Promise<Harness> {
  const h = await startHarness({
    routes,
    rootKey,
    auditExtra: `  origin: ${origin}\n  checkpoint:\n    records: 5\n    seconds: 1\n`,
    extraTop: `cluster:\n  postgres: ${db.url}\n  instance: ${name}\n  staleSeconds: 4\n`,
  });
  services.push(await startEchoService(join(h.dir, 'run', 'demo.sock'), name));
  gateways.push(h);
  return h;
}

/** Polls `gatehouse cluster checkpoint` until the database has a checkpoint of `origin` of at least `size`. */
async function recorded(h: Harness, origin: string, size: number): Promise<string> {
  for (let tries = 0; ; tries++) {
    const out = await runGatehouse(['cluster', 'checkpoint', '--config', join(h.dir, 'routes.yaml'), '--origin', origin]);
    const got = Number(out.stdout.split('\n')[1]);
    if (out.code === 0 && got >= size) return out.stdout;
    if (tries > 50) throw new Error(`no checkpoint of ${origin} at size ${size}: ${out.stdout}${out.stderr}`);
    await sleep(200);
  }
}

beforeAll(async () => {
  if (postgresSkipReason) return;
  db = await startMigratedPostgres();
}, 60_000);

afterAll(async () => {
  for (const h of gateways) await h.stop();
  for (const s of services) s.close();
  await db?.remove();
});

describe.skipIf(postgresSkipReason !== '')(`audit checkpoints in the cluster database${postgresSkipReason}`, () => {
  it("each instance's checkpoints are recorded, and the newest is an anchor audit verify checks its files against", async () => {
    const gw1 = await start('gw1', 'site.example/gw1');
    for (let i = 0; i < 12; i++) expect((await curl(gw1, `/demo/${i}`, { client: await gw1.pki.client('alice'), token })).status).toBe(200);
    const note = await recorded(gw1, 'site.example/gw1', 12);
    expect(note).toMatch(/^site\.example\/gw1\n\d+\n[A-Za-z0-9+/=]+\n\n$/);
    const anchor = join(gw1.dir, 'anchor.note');
    writeFileSync(anchor, note);
    const verified = await runGatehouse(['audit', 'verify', '--unsigned', '--live', '--anchor', anchor, gw1.auditFile]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    // The list names the origin and the instance that recorded it.
    const list = await runGatehouse(['cluster', 'checkpoint', '--config', join(gw1.dir, 'routes.yaml'), '--list']);
    expect(list.stdout).toMatch(/^site\.example\/gw1 {2}size \d+ {2}\(\d+ checkpoint\(s\), newest from gw1 at /m);
  }, 60_000);

  it('a log started again under an origin that reached further is said as rewound, in its own audit log', async () => {
    const gw2 = await start('gw2', 'site.example/gw1');
    const said = await gw2.waitForAudit((r) => r.event === 'cluster.checkpoint', 20_000);
    expect(said.decision).toBe('deny');
    expect(said.detail?.kind).toBe('rewound');
    expect(said.reason).toMatch(/^this log's checkpoint at size \d+ is behind size \d+ recorded by instance gw1 at .*: the log was cut back or started again under its old origin$/);
  }, 60_000);

  it('two different checkpoints at one origin and size are a fork; the same one again is not', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const note = (root: string) => `fork.example/log\n7\n${Buffer.alloc(32, root).toString('base64')}\n\n`;
      expect(await recordCheckpoint(client, 'a', note('x'))).toEqual({ kind: 'recorded' });
      expect(await recordCheckpoint(client, 'a', note('x'))).toEqual({ kind: 'known' });
      const forked = await recordCheckpoint(client, 'b', note('y'));
      expect(forked.kind).toBe('fork');
      expect(await recordCheckpoint(client, 'b', 'not a note')).toMatchObject({ kind: 'malformed' });
    } finally {
      await client.end();
    }
  });
});
