// The cluster database's schema against a real PostgreSQL: `gatehouse cluster migrate` applies the
// migrations once (also when several run at once), rolls back a failing one, refuses a newer schema;
// `gatehouse check` validates the cluster: block; `token revoke --config` writes to the database.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, migrations, schemaVersion } from '../src/cluster/migrations.ts';
import { gatewayConfig, runGatehouse } from './support/gatewayHarness.ts';
import { makeTestPki } from './support/pki.ts';
import { postgresSkipReason, startPostgres, type TestPostgres } from './support/postgres.ts';

let db: TestPostgres;
let dir: string;
let databases = 0;

/** A fresh, empty database on the test server; its URL. */
async function freshDatabase(): Promise<string> {
  const name = `t${++databases}`;
  await withClient(db.url, (c) => c.query(`CREATE DATABASE ${name}`));
  return db.url.replace(/\/postgres$/, `/${name}`);
}

async function withClient<T>(url: string, body: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await body(client);
  } finally {
    await client.end();
  }
}

/** A routes.yaml (with its certificate and key files) whose cluster: block is `cluster`. */
function configWith(cluster: string, name = 'routes.yaml'): string {
  const file = join(dir, name);
  writeFileSync(file, gatewayConfig({ routes: '  - name: demo\n    upstream: unix:/run/demo.sock\n    policy: allow if user($u);\n', extraTop: cluster }));
  return file;
}

const clusterBlock = (url: string) => `cluster:\n  postgres: ${url}\n  instance: gw-test\n`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-cluster-'));
  await makeTestPki(join(dir, 'certs'));
  writeFileSync(join(dir, 'certs', 'token-root.pub'), 'ed25519/' + '11'.repeat(32) + '\n');
  writeFileSync(join(dir, 'certs', 'revoked.txt'), '');
  if (!postgresSkipReason) db = await startPostgres();
}, 60_000);

afterAll(async () => {
  await db?.remove();
});

describe.skipIf(postgresSkipReason !== '')(`cluster schema migrations${postgresSkipReason}`, () => {
  it('gatehouse cluster migrate applies every migration once, then has nothing to do', async () => {
    const config = configWith(clusterBlock(await freshDatabase()));
    const first = await runGatehouse(['cluster', 'migrate', '--config', config]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`^schema version 0 -> ${schemaVersion}: applied 1 \\(instances and revocations\\)`));
    const again = await runGatehouse(['cluster', 'migrate', '--config', config]);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`schema is at version ${schemaVersion}: nothing to do\n`);
  });

  it('eight migrators at once on an empty database: one applies, the others find nothing to do, no error', async () => {
    const url = await freshDatabase();
    const clients = await Promise.all(Array.from({ length: 8 }, async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      return client;
    }));
    try {
      const reports = await Promise.allSettled(clients.map((c, i) => migrate(c, `migrator-${i}`)));
      expect(reports.filter((r) => r.status === 'rejected')).toEqual([]);
      const applied = reports.flatMap((r) => (r.status === 'fulfilled' ? r.value.applied : []));
      expect(applied.map((m) => m.version)).toEqual(migrations.map((m) => m.version));
      const rows = await clients[0]?.query('SELECT version FROM gatehouse_schema_version');
      expect(rows?.rows).toEqual(migrations.map((m) => ({ version: m.version })));
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    // And through the command, several processes at once.
    const config = configWith(clusterBlock(await freshDatabase()), 'race.yaml');
    const runs = await Promise.all(Array.from({ length: 4 }, () => runGatehouse(['cluster', 'migrate', '--config', config])));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0]);
    expect(runs.filter((r) => r.stdout.includes('applied')).length).toBe(1);
  });

  it('a migration that fails leaves nothing behind (one transaction), and says why', async () => {
    const url = await freshDatabase();
    // A table in the way: the first migration's CREATE TABLE fails half way through.
    await withClient(url, (c) => c.query('CREATE TABLE gatehouse_revocations (x int)'));
    const result = await runGatehouse(['cluster', 'migrate', '--config', configWith(clusterBlock(url))]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: relation "gatehouse_revocations" already exists\n$/);
    const left = await withClient(url, (c) => c.query<{ t: string | null; v: string | null }>(`SELECT to_regclass('gatehouse_instances')::text AS t, to_regclass('gatehouse_schema_version')::text AS v`));
    expect(left.rows).toEqual([{ t: null, v: null }]);
  });

  it('refuses a database whose schema is newer than this gatehouse', async () => {
    const url = await freshDatabase();
    const config = configWith(clusterBlock(url));
    expect((await runGatehouse(['cluster', 'migrate', '--config', config])).code).toBe(0);
    await withClient(url, (c) => c.query(`INSERT INTO gatehouse_schema_version (version, name, applied_by) VALUES (99, 'from the future', 'test')`));
    const result = await runGatehouse(['cluster', 'migrate', '--config', config]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`error: the database's schema is version 99, newer than this gatehouse knows (${schemaVersion}): upgrade gatehouse\n`);
  });

  it('an unreachable database is one line and exit 1', async () => {
    const result = await runGatehouse(['cluster', 'migrate', '--config', configWith(clusterBlock('postgres://gatehouse@127.0.0.1:1/none'))]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: .*ECONNREFUSED.*\n$/);
  });
});

describe('the cluster: block in routes.yaml', () => {
  it('gatehouse check accepts it and names each bad key', async () => {
    const good = await runGatehouse(['check', '--config', configWith(`${clusterBlock('postgres://gatehouse@db.example:5432/gatehouse')}  staleSeconds: 5\n  whenStale: serve\n  peerListen: 10.0.0.1:8444\n`)]);
    expect(good.code).toBe(0);
    const bad = await runGatehouse(['check', '--config', configWith('cluster:\n  postgres: mysql://x\n  instance: "two words"\n  whenStale: maybe\n  staleSeconds: 0\n')]);
    expect(bad.code).toBe(1);
    for (const key of ['cluster.postgres', 'cluster.instance', 'cluster.whenStale', 'cluster.staleSeconds']) expect(bad.stderr).toContain(key);
    // The peer channel: certificate and key go together; a lease shorter than 2 s could not be renewed three times.
    const peer = await runGatehouse(['check', '--config', configWith(`${clusterBlock('postgres://gatehouse@db.example:5432/gatehouse')}  peerCert: certs/gw1.crt
  publisherLeaseSeconds: 1
`)]);
    expect(peer.code).toBe(1);
    expect(peer.stderr).toContain('cluster.peerCert');
    expect(peer.stderr).toContain('peerCert and peerKey go together');
    expect(peer.stderr).toContain('cluster.publisherLeaseSeconds');
  });

  it('cluster commands on a config without cluster: say so', async () => {
    const result = await runGatehouse(['cluster', 'status', '--config', configWith('')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/has no cluster: block/);
  });
});

describe.skipIf(postgresSkipReason !== '')(`token revoke --config with a cluster${postgresSkipReason}`, () => {
  it('writes the id to the cluster database (once), not to the file', async () => {
    const url = await freshDatabase();
    const config = configWith(clusterBlock(url));
    expect((await runGatehouse(['cluster', 'migrate', '--config', config])).code).toBe(0);
    const id = 'ab'.repeat(64);
    const first = await runGatehouse(['token', 'revoke', '--config', config, '--id', id.toUpperCase()]);
    expect(first.stderr).toMatch(/^added 1 id\(s\) to the cluster database/);
    expect(first.stdout).toBe(`${id}\n`);
    const again = await runGatehouse(['token', 'revoke', '--config', config, '--id', id]);
    expect(again.stderr).toBe('already revoked in the cluster database\n');
    const rows = await withClient(url, (c) => c.query('SELECT seq, revocation_id FROM gatehouse_revocations'));
    expect(rows.rows).toEqual([{ seq: '1', revocation_id: id }]);
    expect(readFileSync(join(dir, 'certs', 'revoked.txt'), 'utf8')).toBe('');
    const status = JSON.parse((await runGatehouse(['cluster', 'status', '--config', config, '--json'])).stdout) as { revocations: { count: number } };
    expect(status.revocations.count).toBe(1);
  });

  it('a database that cannot be reached: nothing revoked, exit 1, and the password never shown', async () => {
    const config = configWith(clusterBlock('postgres://gatehouse:s3cret@127.0.0.1:1/none'));
    const result = await runGatehouse(['token', 'revoke', '--config', config, '--id', 'cd'.repeat(64)]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/cluster database postgres:\/\/gatehouse:\*\*\*@127\.0\.0\.1:1\/none: .*nothing revoked/);
    expect(result.stderr).not.toContain('s3cret');
  });
});
