// Broken configuration pushed into a running `gatehouse serve` by SIGHUP: every bad file must be
// refused with a config.reload deny record naming the error, while the running config keeps serving.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayConfig, inOneHour, mintRaw, startHarness, type Harness } from '../support/gatewayHarness.ts';
import type { TestClientCertificate } from '../support/pki.ts';
import { auditMark, recordAfter } from './support/caseChecks.ts';
import { rawExchange } from './support/rawClient.ts';
import { startUpstreamRecorder, type UpstreamRecorder } from './support/upstreamRecorder.ts';

const webRoute = (name: string, policy = 'allow if user($u);') => `  - name: ${name}
    path: /${name}/
    upstream: unix:run/recorder.sock
    policy: |
      ${policy}
`;
const goodConfig = gatewayConfig({ routes: webRoute('web') });
/** A config that would replace `web` by `renamed`: if it were applied, /web/ would answer 404. */
const replacing = gatewayConfig({ routes: webRoute('renamed') });

let h: Harness;
let alice: TestClientCertificate;
let recorder: UpstreamRecorder;

const configFile = () => join(h.dir, 'routes.yaml');
const webStatus = async (): Promise<number | undefined> => {
  const tok = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  const res = await rawExchange({ port: h.port, ca: h.pki.caCert, cert: alice.cert, key: alice.key }, `GET /web/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${tok}\r\nConnection: close\r\n\r\n`, { expectResponses: 1 });
  return res.finals[0]?.status;
};

interface ConfigCase {
  name: string;
  /** Writes the broken state (routes.yaml and any files it names). */
  apply: () => void;
  /** What the config.reload deny record's reason must name. */
  reason: RegExp;
}

const withTop = (text: string) => replacing.replace('routes:\n', `${text}routes:\n`);
const write = (text: string) => () => writeFileSync(configFile(), text);

const cases: ConfigCase[] = [
  { name: 'broken YAML (unclosed flow sequence)', apply: write(`${replacing}  - [unclosed\n`), reason: /routes\.yaml:\d+:\d+: \(document\): YAML syntax: Flow sequence/ },
  { name: 'YAML with a tab for indentation', apply: write(replacing.replace('  - name: renamed', '\t- name: renamed')), reason: /YAML syntax: Tabs are not allowed as indentation/ },
  { name: 'empty file', apply: write(''), reason: /routes\.yaml:1:1: \(document\): expected a mapping, got nothing/ },
  { name: 'a YAML alias bomb (billion laughs)', apply: write(`a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n${replacing}`), reason: /Excessive alias count/ },
  { name: 'unknown top-level key', apply: write(withTop('frobnicate: true\n')), reason: /frobnicate: unknown key "frobnicate"/ },
  { name: 'unknown key in a route', apply: write(replacing.replace('    path: /renamed/\n', '    path: /renamed/\n    upstreem: unix:run/x.sock\n')), reason: /routes\[0\]\.upstreem: unknown key/ },
  { name: 'policy that is not Datalog', apply: write(gatewayConfig({ routes: webRoute('renamed', 'allow if user($u) and then some;') })), reason: /routes\[0\]\.policy: policy does not parse/ },
  { name: 'policy with an undeclared {parameter}', apply: write(gatewayConfig({ routes: webRoute('renamed', 'allow if user({who});') })), reason: /\{who\}/ },
  { name: 'two routes with the same name', apply: write(gatewayConfig({ routes: webRoute('renamed') + webRoute('renamed') })), reason: /duplicate route name "renamed"/ },
  { name: 'upstream that is neither unix: nor tcp:', apply: write(replacing.replace('unix:run/recorder.sock', 'ftp://example.org/')), reason: /routes\[0\]\.upstream: expected unix:/ },
  { name: 'limits.maxTokenBytes below its minimum', apply: write(withTop('limits:\n  maxTokenBytes: 10\n')), reason: /limits\.maxTokenBytes: Too small/ },
  { name: 'missing TLS certificate file', apply: write(replacing.replace('certs/server.crt', 'certs/nope.crt')), reason: /tls\.cert: cannot read .*nope\.crt: no such file/ },
  { name: 'missing TLS key file', apply: write(replacing.replace('certs/server.key', 'certs/nope.key')), reason: /tls\.key: cannot read .*nope\.key: no such file/ },
  { name: 'client CA file that is not PEM', apply: () => { writeFileSync(join(h.dir, 'certs', 'junk-ca.crt'), 'not a certificate\n'); write(replacing.replace('certs/ca.crt', 'certs/junk-ca.crt'))(); }, reason: /tls\.clientCa: no PEM certificate/ },
  { name: 'server key that does not match the certificate', apply: write(replacing.replace('certs/server.key', 'certs/ca.key')), reason: /tls\.key: this private key does not belong to the certificate/ },
  { name: 'missing token root key file', apply: write(replacing.replace('certs/token-root.pub', 'certs/nope.pub')), reason: /authz\.rootKey: cannot read .*nope\.pub: no such file/ },
  { name: 'token root key that is not a key', apply: () => { writeFileSync(join(h.dir, 'certs', 'junk.pub'), 'ed25519/zz\n'); write(replacing.replace('certs/token-root.pub', 'certs/junk.pub'))(); }, reason: /authz\.rootKey: expected ed25519\// },
  { name: 'unreadable revocation list (a directory)', apply: () => { mkdirSync(join(h.dir, 'certs', 'revoked-dir'), { recursive: true }); write(replacing.replace('certs/revoked.txt', 'certs/revoked-dir'))(); }, reason: /authz\.revocationList: cannot read .*revoked-dir: is a directory/ },
  { name: 'missing revocation list', apply: write(replacing.replace('certs/revoked.txt', 'certs/nope.txt')), reason: /authz\.revocationList: cannot read .*nope\.txt: no such file/ },
  { name: 'malformed revocation list', apply: () => { writeFileSync(join(h.dir, 'certs', 'bad-revoked.txt'), 'zz not an id\n'); write(replacing.replace('certs/revoked.txt', 'certs/bad-revoked.txt'))(); }, reason: /bad-revoked\.txt:1:1: authz\.revocationList: expected one revocation id/ },
  { name: 'config file deleted', apply: () => rmSync(configFile()), reason: /routes\.yaml: \(document\): cannot read config: no such file/ },
];

beforeAll(async () => {
  h = await startHarness({ routes: webRoute('web') });
  alice = await h.pki.client('alice');
  recorder = await startUpstreamRecorder(join(h.dir, 'run', 'recorder.sock'));
  expect(await webStatus()).toBe(200);
});

afterAll(async () => {
  await recorder?.close();
  await h?.stop();
});

describe('SIGHUP with a broken configuration keeps the running one', () => {
  for (const c of cases) {
    it(`${c.name}: config.reload deny naming the error, still serving the old routes`, async () => {
      const mark = auditMark({ h });
      c.apply();
      h.proc.kill('SIGHUP');
      const record = await recordAfter({ h }, mark, (r) => r.event === 'config.reload', 10_000);
      writeFileSync(configFile(), goodConfig);
      expect(record, 'a config.reload record').toBeDefined();
      expect(record?.decision).toBe('deny');
      expect(record?.reason).toMatch(/^kept the running config: /);
      expect(record?.reason).toMatch(c.reason);
      expect(h.proc.exitCode, 'the gateway must keep running').toBeNull();
      expect(await webStatus(), 'the running routes still serve').toBe(200);
    });
  }

  it('the running revocation list turning malformed in place: fails closed (503 for everyone, revocation.reload deny), recovers once fixed', async () => {
    const mark = auditMark({ h });
    writeFileSync(h.revocationList, 'zz not an id\n');
    h.proc.kill('SIGHUP');
    const record = await recordAfter({ h }, mark, (r) => r.event === 'revocation.reload' && r.decision === 'deny', 10_000);
    expect(record?.reason).toMatch(/refusing every request until the list is readable/);
    expect(await webStatus()).toBe(503);
    writeFileSync(h.revocationList, '# revoked token ids\n');
    h.proc.kill('SIGHUP');
    await recordAfter({ h }, mark, (r) => r.event === 'revocation.reload' && r.decision === 'allow', 10_000);
    expect(await webStatus()).toBe(200);
  });

  it('a good configuration after all of them is applied (the reload path still works)', async () => {
    const mark = auditMark({ h });
    writeFileSync(configFile(), gatewayConfig({ routes: webRoute('web') + webRoute('added') }));
    h.proc.kill('SIGHUP');
    // Reloads from the case before may still be finishing: look for this one by its new route.
    const record = await recordAfter({ h }, mark, (r) => r.event === 'config.reload' && JSON.stringify(r.detail ?? {}).includes('added'), 10_000);
    expect(record).toMatchObject({ decision: 'allow' });
    expect(record?.detail).toMatchObject({ routes: ['web', 'added'] });
    expect(await webStatus()).toBe(200);
  });
});
