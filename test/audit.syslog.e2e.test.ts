// Audit records shipped to a real rsyslogd (RFC 5424, octet-counted, over TCP and over TLS): the
// receiver's copy is byte for byte the gateway's file, and `gatehouse audit verify` accepts it.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { auditKeys, runCli, signedAudit, webUpstream } from './support/auditFixtures.ts';
import { curl, inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import { freePort, startListening, which, type PeerProcess } from './support/localServices.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';

const rsyslogd = which('rsyslogd') ?? which('/usr/sbin/rsyslogd');
// TLS needs rsyslog's gtls driver (Debian package rsyslog-gnutls).
const gtls = ['/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so', '/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so', '/usr/lib/rsyslog/lmnsd_gtls.so'].some((p) => existsSync(p));

const routes = `  - name: web
    path: /web/
    upstream: unix:run/web.sock
    policy: |
      allow if user($u);
`;

/** rsyslogd in the foreground on 127.0.0.1:`port`, writing each message's MSG part, unchanged, to `out`. */
async function startRsyslog(dir: string, port: number, out: string, pki?: TestPki): Promise<PeerProcess> {
  const tls = pki
    ? `global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="${pki.caCertPath}" DefaultNetstreamDriverCertFile="${pki.serverCertPath}" DefaultNetstreamDriverKeyFile="${pki.serverKeyPath}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")`
    : 'module(load="imtcp")';
  writeFileSync(
    join(dir, 'rsyslog.conf'),
    `global(workDirectory="${dir}" maxMessageSize="256k")
${tls}
template(name="auditLine" type="string" string="%msg%\\n")
input(type="imtcp" address="127.0.0.1" port="${port}" supportOctetCountedFraming="on")
if $app-name == "gatehouse" and $msgid == "audit" then { action(type="omfile" file="${out}" template="auditLine") }
`,
  );
  return startListening(rsyslogd ?? 'rsyslogd', ['-n', '-f', join(dir, 'rsyslog.conf'), '-i', join(dir, 'rsyslogd.pid')], [port], 'rsyslogd');
}

async function shipAndCompare(transport: 'tcp' | 'tls'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `gatehouse-syslog-${transport}-`));
  const port = await freePort();
  const shipped = join(dir, 'shipped.log');
  const pki = transport === 'tls' ? await makeTestPki(join(dir, 'pki'), ['127.0.0.1']) : undefined;
  const syslog = await startRsyslog(dir, port, shipped, pki);
  cleanups.push(() => syslog.stop());
  const tlsLines = pki ? `    tls:\n      ca: ${pki.caCertPath}\n      servername: localhost\n` : '';
  const h: Harness = await startHarness({ routes, extraTop: `${signedAudit(5)}  syslog:\n    tcp: 127.0.0.1:${port}\n${tlsLines}` });
  cleanups.push(() => h.stop().then(() => undefined));
  const web: Server = await webUpstream(join(h.dir, 'run', 'web.sock'));
  cleanups.push(async () => void web.close());
  const alice = await h.pki.client('alice');
  const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  for (let i = 0; i < 12; i += 1) expect((await curl(h, `/web/${transport}-${i}`, { client: alice, token })).status).toBe(200);
  expect(await h.stop()).toBe(0);

  const local = readFileSync(h.auditFile, 'utf8');
  const until = Date.now() + 10_000;
  while ((existsSync(shipped) ? readFileSync(shipped, 'utf8') : '').length < local.length && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  expect(readFileSync(shipped, 'utf8')).toBe(local);
  const verified = await runCli(['audit', 'verify', '--key', `${auditKeys}.pub`, shipped]);
  expect(verified.stdout).toMatch(/^OK 1 file\(s\), \d+ records, seq 1\.\./);
  expect(verified.code).toBe(0);
}

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('shipping to syslog', () => {
  it.skipIf(!rsyslogd)(`over TCP: rsyslogd's copy equals the file and verifies${rsyslogd ? '' : ' (skipped: rsyslogd is not installed)'}`, () => shipAndCompare('tcp'), 60_000);
  it.skipIf(!rsyslogd || !gtls)(`over TLS: rsyslogd's copy equals the file and verifies${rsyslogd && gtls ? '' : ' (skipped: rsyslogd with its gtls driver, package rsyslog-gnutls, is not installed)'}`, () => shipAndCompare('tls'), 60_000);
});
